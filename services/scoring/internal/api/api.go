// Package api implements lodestar.scoring.v1.ScoringService. Scores are read
// from the hot cache, never from the scoring core's memory; history older
// than the cache keeps comes from the SCORES stream.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/lodestar-cs/lodestar/internal/scorecards"
	"github.com/lodestar-cs/lodestar/internal/scorecore/scorecard"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/grpcerr"
	"github.com/lodestar-cs/lodestar/pkg/natsx"
	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// Limits of the API.
const (
	MaxBatchGet = 1000
	// MaxActivityDays bounds GetAccountActivity's days (the engine's
	// longest window).
	MaxActivityDays     = 90
	defaultActivityDays = 30
	// maxHistoryScan bounds the SCORES messages one history page may read.
	maxHistoryScan = 100_000
)

// Reader is the hot cache, as the API reads it.
type Reader interface {
	GetScore(ctx context.Context, tenant, accountID string) (*scoringv1.HealthScore, error)
	GetScores(ctx context.Context, tenant string, accountIDs []string) ([]*scoringv1.HealthScore, error)
	ListScores(ctx context.Context, tenant string, q cache.ListQuery) ([]*scoringv1.HealthScore, string, error)
	BandCounts(ctx context.Context, tenant string) (*scoringv1.BandCounts, error)
	History(ctx context.Context, tenant, accountID string, q cache.HistoryQuery) ([]*scoringv1.HealthScore, string, error)
}

// EncodedReader is a cache that can also return a score encoded, as it
// stores it (pkg/cache's Redis): GetHealthScore then passes the score on
// without decoding and encoding it again.
type EncodedReader interface {
	GetScoreEncoded(ctx context.Context, tenant, accountID string) ([]byte, error)
}

// ActivityFunc reads an account's activity from the engine scoring it:
// found is false when that engine does not know the account; an error, a
// gRPC status, says the engine is out of reach.
type ActivityFunc func(tenant, account string, days int) (resp *scoringv1.GetAccountActivityResponse, found bool, err error)

// Server serves ScoringService.
type Server struct {
	scoringv1.UnimplementedScoringServiceServer

	cache Reader
	// partitions is the deployment's count, for SCORES subjects.
	partitions uint32
	// encoded is cache when it is an EncodedReader, nil otherwise.
	encoded EncodedReader
	// scorecards is set once the service has opened its bucket.
	scorecards atomic.Pointer[scorecards.Store]
	// activity is set once the service runs its partitions.
	activity atomic.Pointer[ActivityFunc]
	// defaultScorecard is what tenants without a stored scorecard use.
	defaultScorecard *scoringv1.Scorecard
	js               jetstream.JetStream
	logger           *slog.Logger
	now              func() time.Time
}

// New returns the server. Scorecard calls answer Unavailable until
// SetScorecards is called.
func New(c Reader, defaultScorecard *scoringv1.Scorecard, js jetstream.JetStream, partitions int, logger *slog.Logger) *Server {
	s := &Server{cache: c, defaultScorecard: defaultScorecard, js: js, partitions: uint32(partitions), logger: logger, now: time.Now}
	s.encoded, _ = c.(EncodedReader)
	return s
}

// SetScorecards gives the server the scorecard store.
func (s *Server) SetScorecards(st *scorecards.Store) { s.scorecards.Store(st) }

// SetActivity gives the server the engines' activity.
func (s *Server) SetActivity(f ActivityFunc) { s.activity.Store(&f) }

func (s *Server) scorecardStore() (*scorecards.Store, error) {
	st := s.scorecards.Load()
	if st == nil {
		return nil, status.Error(codes.Unavailable, "scoring is starting: scorecards not loaded yet")
	}
	return st, nil
}

// badRequest is an InvalidArgument status listing field violations.
func badRequest(msg string, violations ...*errdetails.BadRequest_FieldViolation) error {
	return grpcerr.Error(codes.InvalidArgument, msg, violations...)
}

func (s *Server) internal(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	if errors.Is(err, cache.ErrBadPageToken) {
		return badRequest("bad page token", grpcerr.Violation("page_token", err.Error()))
	}
	s.logger.Error(op, "err", err)
	return status.Errorf(codes.Unavailable, "%s: %v", op, err)
}

// GetHealthScore returns an account's current score. From a cache that
// returns scores encoded, the response carries the stored encoding as it is
// (see encodedScoreResponse).
func (s *Server) GetHealthScore(ctx context.Context, req *scoringv1.GetHealthScoreRequest) (*scoringv1.GetHealthScoreResponse, error) {
	tenant, err := grpcerr.Tenant(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetAccountId() == "" {
		return nil, badRequest("account_id is required", grpcerr.Violation("account_id", "required"))
	}
	var resp *scoringv1.GetHealthScoreResponse
	if s.encoded != nil {
		var b []byte
		if b, err = s.encoded.GetScoreEncoded(ctx, tenant, req.GetAccountId()); err == nil {
			resp = encodedScoreResponse(b)
		}
	} else {
		var hs *scoringv1.HealthScore
		if hs, err = s.cache.GetScore(ctx, tenant, req.GetAccountId()); err == nil {
			resp = &scoringv1.GetHealthScoreResponse{Score: hs}
		}
	}
	if errors.Is(err, cache.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "no score for account %q yet", req.GetAccountId())
	}
	if err != nil {
		return nil, s.internal("get score", err)
	}
	return resp, nil
}

// scoreField is the field number of GetHealthScoreResponse.score.
var scoreField = (&scoringv1.GetHealthScoreResponse{}).ProtoReflect().Descriptor().Fields().ByName("score").Number()

// encodedScoreResponse returns a GetHealthScoreResponse whose score is
// score, an encoded HealthScore, held as the message's unknown fields: they
// marshal as they are, so the response goes on the wire with the bytes of
// one whose Score field is set (a message field is its tag, its length and
// its encoding), and the score is neither decoded nor encoded again on its
// way from the cache. Every client decodes it as the score; in this process
// GetScore() of the response is nil, which nothing between the handler and
// the codec looks at.
func encodedScoreResponse(score []byte) *scoringv1.GetHealthScoreResponse {
	b := make([]byte, 0, protowire.SizeTag(scoreField)+protowire.SizeBytes(len(score)))
	b = protowire.AppendTag(b, scoreField, protowire.BytesType)
	b = protowire.AppendBytes(b, score)
	resp := &scoringv1.GetHealthScoreResponse{}
	resp.ProtoReflect().SetUnknown(b)
	return resp
}

// BatchGetHealthScores returns several accounts' scores in one call.
func (s *Server) BatchGetHealthScores(ctx context.Context, req *scoringv1.BatchGetHealthScoresRequest) (*scoringv1.BatchGetHealthScoresResponse, error) {
	tenant, err := grpcerr.Tenant(ctx)
	if err != nil {
		return nil, err
	}
	ids := req.GetAccountIds()
	if len(ids) > MaxBatchGet {
		return nil, badRequest("too many account ids", grpcerr.Violation("account_ids", fmt.Sprintf("at most %d, got %d", MaxBatchGet, len(ids))))
	}
	for i, id := range ids {
		if id == "" {
			return nil, badRequest("empty account id", grpcerr.Violation(fmt.Sprintf("account_ids[%d]", i), "must not be empty"))
		}
	}
	scores, err := s.cache.GetScores(ctx, tenant, ids)
	if err != nil {
		return nil, s.internal("get scores", err)
	}
	resp := &scoringv1.BatchGetHealthScoresResponse{}
	for i, hs := range scores {
		if hs == nil {
			resp.MissingAccountIds = append(resp.MissingAccountIds, ids[i])
			continue
		}
		resp.Scores = append(resp.Scores, hs)
	}
	return resp, nil
}

// ListHealthScores lists the tenant's scores, worst first by default.
func (s *Server) ListHealthScores(ctx context.Context, req *scoringv1.ListHealthScoresRequest) (*scoringv1.ListHealthScoresResponse, error) {
	tenant, err := grpcerr.Tenant(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkPageSize(req.GetPageSize()); err != nil {
		return nil, err
	}
	scores, next, err := s.cache.ListScores(ctx, tenant, cache.ListQuery{
		Band:       req.GetBand(),
		Tier:       req.GetTier(),
		OwnerCSMID: req.GetOwnerCsmId(),
		Segment:    req.GetSegment(),
		Stage:      req.GetLifecycleStage(),
		Order:      req.GetOrderBy(),
		PageSize:   int(req.GetPageSize()),
		PageToken:  req.GetPageToken(),
	})
	if err != nil {
		return nil, s.internal("list scores", err)
	}
	counts, err := s.cache.BandCounts(ctx, tenant)
	if err != nil {
		return nil, s.internal("band counts", err)
	}
	return &scoringv1.ListHealthScoresResponse{Scores: scores, NextPageToken: next, BandCounts: counts}, nil
}

func checkPageSize(n int32) error {
	if n < 0 || n > 1000 {
		return badRequest("bad page size", grpcerr.Violation("page_size", "must be 0 to 1000"))
	}
	return nil
}

// Page tokens of GetScoreHistory: "c" + the score time (unix nanoseconds)
// of the last change returned + "." + a cache token, or "s" + the score
// time below which the SCORES stream is read.
const (
	cacheToken  = "c"
	streamToken = "s"
)

// GetScoreHistory lists an account's score changes, newest first: from the
// cache while it has them, then from the durable SCORES stream.
func (s *Server) GetScoreHistory(ctx context.Context, req *scoringv1.GetScoreHistoryRequest) (*scoringv1.GetScoreHistoryResponse, error) {
	tenant, err := grpcerr.Tenant(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetAccountId() == "" {
		return nil, badRequest("account_id is required", grpcerr.Violation("account_id", "required"))
	}
	if err := checkPageSize(req.GetPageSize()); err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = 100
	}
	var start, end time.Time
	if req.GetStartTime() != nil {
		start = req.GetStartTime().AsTime()
	}
	if req.GetEndTime() != nil {
		end = req.GetEndTime().AsTime()
	}
	tok := req.GetPageToken()
	resp := &scoringv1.GetScoreHistoryResponse{}
	before := end
	if tok == "" || strings.HasPrefix(tok, cacheToken) {
		// A cache token carries the time of the last change returned: should
		// newer changes push the rest out of the cache's window meanwhile,
		// the stream goes on from there, not from the newest change again.
		var cacheTok string
		if tok != "" {
			ns, rest, ok := strings.Cut(strings.TrimPrefix(tok, cacheToken), ".")
			n, err := strconv.ParseInt(ns, 10, 64)
			if !ok || err != nil {
				return nil, badRequest("bad page token", grpcerr.Violation("page_token", "not a token of this call"))
			}
			before, cacheTok = time.Unix(0, n), rest
		}
		scores, next, err := s.cache.History(ctx, tenant, req.GetAccountId(), cache.HistoryQuery{
			Start: start, End: end, PageSize: size, PageToken: cacheTok,
		})
		if err != nil {
			return nil, s.internal("score history", err)
		}
		resp.Scores = scores
		if n := len(scores); n > 0 {
			before = scores[n-1].GetScoreTime().AsTime()
		}
		if next != "" {
			resp.NextPageToken = cacheToken + strconv.FormatInt(before.UnixNano(), 10) + "." + next
			return resp, nil
		}
	} else {
		ns, err := strconv.ParseInt(strings.TrimPrefix(tok, streamToken), 10, 64)
		if !strings.HasPrefix(tok, streamToken) || err != nil {
			return nil, badRequest("bad page token", grpcerr.Violation("page_token", "not a token of this call"))
		}
		before = time.Unix(0, ns)
	}
	// The cache keeps the newest changes only: the rest is in the stream.
	want := size - len(resp.Scores)
	if want == 0 {
		resp.NextPageToken = streamToken + strconv.FormatInt(before.UnixNano(), 10)
		return resp, nil
	}
	older, err := s.streamHistory(ctx, tenant, req.GetAccountId(), start, before, want)
	if err != nil {
		return nil, s.internal("score history from stream", err)
	}
	resp.Scores = append(resp.Scores, older...)
	if len(older) == want {
		last := older[len(older)-1].GetScoreTime().AsTime()
		resp.NextPageToken = streamToken + strconv.FormatInt(last.UnixNano(), 10)
	}
	return resp, nil
}

// streamHistory reads an account's changes with score time in [start,
// before) from the SCORES stream and returns the newest n, newest first.
func (s *Server) streamHistory(ctx context.Context, tenant, account string, start, before time.Time, n int) ([]*scoringv1.HealthScore, error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{natsx.ScoreSubject(tenant, account, s.partitions)}}
	if !start.IsZero() {
		// Score changes are published after their score time.
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	cons, err := s.js.OrderedConsumer(ctx, natsx.StreamScores, cfg)
	if err != nil {
		return nil, err
	}
	ring := make([]*scoringv1.HealthScore, 0, n)
	for scanned := 0; scanned < maxHistoryScan; {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return nil, err
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			var ev scoringv1.ScoreChangeEvent
			if err := proto.Unmarshal(msg.Data(), &ev); err != nil {
				continue
			}
			t := ev.GetScore().GetScoreTime().AsTime()
			if (!before.IsZero() && !t.Before(before)) || (!start.IsZero() && t.Before(start)) {
				continue
			}
			if len(ring) == n {
				ring = append(ring[:0], ring[1:]...)
			}
			ring = append(ring, ev.GetScore())
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if got == 0 {
			break
		}
		scanned += got
	}
	// Oldest first in the ring; the API answers newest first.
	for i, j := 0, len(ring)-1; i < j; i, j = i+1, j-1 {
		ring[i], ring[j] = ring[j], ring[i]
	}
	return ring, nil
}

// GetScorecard returns the tenant's active scorecard or one version of it.
func (s *Server) GetScorecard(ctx context.Context, req *scoringv1.GetScorecardRequest) (*scoringv1.GetScorecardResponse, error) {
	tenant, err := grpcerr.Tenant(ctx)
	if err != nil {
		return nil, err
	}
	store, err := s.scorecardStore()
	if err != nil {
		return nil, err
	}
	v := req.GetVersion()
	var sc *scoringv1.Scorecard
	switch {
	case v < 0:
		return nil, badRequest("bad version", grpcerr.Violation("version", "must not be negative"))
	case v == 0:
		sc, err = store.Active(ctx, tenant)
	default:
		sc, err = store.Get(ctx, tenant, v)
	}
	if errors.Is(err, scorecards.ErrNotFound) {
		if v == 0 || v == s.defaultScorecard.GetVersion() {
			return &scoringv1.GetScorecardResponse{Scorecard: proto.CloneOf(s.defaultScorecard)}, nil
		}
		return nil, status.Errorf(codes.NotFound, "no scorecard version %d", v)
	}
	if err != nil {
		return nil, s.internal("get scorecard", err)
	}
	return &scoringv1.GetScorecardResponse{Scorecard: sc}, nil
}

// UpdateScorecard validates a scorecard and stores it as the tenant's next,
// active version; scoring applies it within moments.
func (s *Server) UpdateScorecard(ctx context.Context, req *scoringv1.UpdateScorecardRequest) (*scoringv1.UpdateScorecardResponse, error) {
	tenant, err := grpcerr.Tenant(ctx)
	if err != nil {
		return nil, err
	}
	store, err := s.scorecardStore()
	if err != nil {
		return nil, err
	}
	if err := rejectInvalid(req.GetScorecard()); err != nil {
		return nil, err
	}
	stored, err := store.Put(ctx, tenant, req.GetScorecard(), s.defaultScorecard.GetVersion(), s.now())
	if err != nil {
		return nil, s.internal("store scorecard", err)
	}
	return &scoringv1.UpdateScorecardResponse{Scorecard: stored}, nil
}

func rejectInvalid(sc *scoringv1.Scorecard) error {
	if sc == nil {
		return badRequest("scorecard is required", grpcerr.Violation("scorecard", "required"))
	}
	problems := scorecard.Validate(sc)
	if len(problems) == 0 {
		return nil
	}
	vs := make([]*errdetails.BadRequest_FieldViolation, len(problems))
	msgs := make([]string, len(problems))
	for i, p := range problems {
		vs[i] = grpcerr.Violation("scorecard."+p.GetField(), p.GetDescription())
		msgs[i] = p.GetField() + ": " + p.GetDescription()
	}
	return badRequest(fmt.Sprintf("invalid scorecard: %d problems: %s", len(problems), strings.Join(msgs, "; ")), vs...)
}

// ValidateScorecard lists every problem of a scorecard without storing it.
func (s *Server) ValidateScorecard(ctx context.Context, req *scoringv1.ValidateScorecardRequest) (*scoringv1.ValidateScorecardResponse, error) {
	if _, err := grpcerr.Tenant(ctx); err != nil {
		return nil, err
	}
	if req.GetScorecard() == nil {
		return nil, badRequest("scorecard is required", grpcerr.Violation("scorecard", "required"))
	}
	problems := scorecard.Validate(req.GetScorecard())
	return &scoringv1.ValidateScorecardResponse{Valid: len(problems) == 0, Problems: problems}, nil
}

// GetAccountActivity returns an account's core events per day and its key
// events, from the engine that scores it: the cache holds scores only.
func (s *Server) GetAccountActivity(ctx context.Context, req *scoringv1.GetAccountActivityRequest) (*scoringv1.GetAccountActivityResponse, error) {
	tenant, err := grpcerr.Tenant(ctx)
	if err != nil {
		return nil, err
	}
	var vs []*errdetails.BadRequest_FieldViolation
	if req.GetAccountId() == "" {
		vs = append(vs, grpcerr.Violation("account_id", "required"))
	}
	days := int(req.GetDays())
	if days < 0 || days > MaxActivityDays {
		vs = append(vs, grpcerr.Violation("days", fmt.Sprintf("must be 0 to %d, got %d", MaxActivityDays, days)))
	}
	if len(vs) > 0 {
		return nil, badRequest("bad activity request", vs...)
	}
	if days == 0 {
		days = defaultActivityDays
	}
	f := s.activity.Load()
	if f == nil {
		return nil, status.Error(codes.Unavailable, "scoring is starting: no partition running yet")
	}
	resp, found, err := (*f)(tenant, req.GetAccountId(), days)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, status.Errorf(codes.NotFound, "no activity for account %q", req.GetAccountId())
	}
	return resp, nil
}
