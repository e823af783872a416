package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

// maxBatchGet is the most accounts one BatchGetHealthScores call may name.
const maxBatchGet = 1000

// scoreReader reads health scores over gRPC with the tenant's API key.
type scoreReader struct {
	conn   *grpc.ClientConn
	client scoringv1.ScoringServiceClient
	apiKey string
}

func newScoreReader(addr, apiKey string) (*scoreReader, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &scoreReader{conn: conn, client: scoringv1.NewScoringServiceClient(conn), apiKey: apiKey}, nil
}

func (r *scoreReader) Close() error { return r.conn.Close() }

func (r *scoreReader) auth(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+r.apiKey)
}

// read returns the current score of each account that has one.
func (r *scoreReader) read(ctx context.Context, ids []string) (map[string]*scoringv1.HealthScore, error) {
	out := make(map[string]*scoringv1.HealthScore, len(ids))
	for start := 0; start < len(ids); start += maxBatchGet {
		resp, err := r.client.BatchGetHealthScores(r.auth(ctx), &scoringv1.BatchGetHealthScoresRequest{
			AccountIds: ids[start:min(start+maxBatchGet, len(ids))],
		})
		if err != nil {
			return nil, fmt.Errorf("BatchGetHealthScores: %w", err)
		}
		for _, s := range resp.GetScores() {
			out[s.GetAccountId()] = s
		}
	}
	return out, nil
}

// caughtUp is the scores read at a pause of the replay.
type caughtUp struct {
	// Scores are the accounts' scores at the watermark's day; accounts
	// without a score or with one of an earlier day (stale) are left out.
	Scores map[string]*scoringv1.HealthScore
	// Stale counts accounts whose score is of an earlier day.
	Stale int
	// TimedOut is true when the wait ended at its timeout, before the
	// scores stopped changing.
	TimedOut bool
	// Wait is how long it took from the last event answered to stable
	// scores.
	Wait time.Duration
}

// Scores are read again until two reads pollInterval apart agree: scoring
// applies an event before it flushes (every 50 ms by default) the scores it
// moved, so a read right after the last event is applied may miss its effect.
// An account without a score of the day by then has none.
const pollInterval = 500 * time.Millisecond

// waitScores waits until scoring has applied every event sent and the scores
// of the watermark's day have stopped changing, at most timeout; and returns
// them.
func waitScores(ctx context.Context, l *lodestar, r *scoreReader, sent int, ids []string, day time.Time, timeout time.Duration) (*caughtUp, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	if err := l.drain(ctx, sent, timeout); err != nil {
		return nil, err
	}
	var last *caughtUp
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pollInterval):
		}
		all, err := r.read(ctx, ids)
		if err != nil {
			return nil, err
		}
		res := &caughtUp{Scores: make(map[string]*scoringv1.HealthScore, len(all)), Wait: time.Since(start)}
		for id, s := range all {
			if s.GetScoreTime().AsTime().Truncate(24 * time.Hour).Equal(day) {
				res.Scores[id] = s
			} else {
				res.Stale++
			}
		}
		if last != nil && last.same(res) {
			return res, nil
		}
		if time.Now().After(deadline) {
			res.TimedOut = true
			return res, nil
		}
		last = res
	}
}

// same reports whether two reads found the same scores at the same times.
func (c *caughtUp) same(o *caughtUp) bool {
	if len(c.Scores) != len(o.Scores) || c.Stale != o.Stale {
		return false
	}
	for id, s := range c.Scores {
		t := o.Scores[id]
		if t == nil || t.GetScore() != s.GetScore() || !t.GetScoreTime().AsTime().Equal(s.GetScoreTime().AsTime()) {
			return false
		}
	}
	return true
}

// historySample is how many accounts' recorded histories writeHistory
// reads: each read past the cache opens a consumer on the SCORES stream,
// and the embedded server's consumer limit stops a read of every account.
const historySample = 200

// writeHistory writes, one line each, the current score of every account
// at each split and the recorded score history
// (ScoringService.GetScoreHistory) of the first historySample accounts by
// id: what two runs compare to tell that scoring recorded the same history.
func (r *scoreReader) writeHistory(ctx context.Context, path string, splits []*splitScores) (int, error) {
	var lines []string
	var ids []string
	for _, s := range splits {
		for _, a := range s.accts {
			if hs := a.Score; hs != nil {
				lines = append(lines, fmt.Sprintf("current %s\t%s\t%s\t%.2f\t%s", s.split.Last.Format(time.DateOnly), a.ID,
					hs.GetScoreTime().AsTime().UTC().Format(time.RFC3339), hs.GetScore(), hs.GetBand()))
			}
		}
	}
	for _, a := range splits[len(splits)-1].accts {
		ids = append(ids, a.ID)
	}
	slices.Sort(ids)
	for _, id := range ids[:min(historySample, len(ids))] {
		token := ""
		for {
			resp, err := r.client.GetScoreHistory(r.auth(ctx), &scoringv1.GetScoreHistoryRequest{AccountId: id, PageSize: 1000, PageToken: token})
			if err != nil {
				return 0, fmt.Errorf("GetScoreHistory %s: %w", id, err)
			}
			for _, hs := range resp.GetScores() {
				lines = append(lines, fmt.Sprintf("history %s\t%s\t%.2f\t%s\t%s\t%v", id, hs.GetScoreTime().AsTime().UTC().Format(time.RFC3339),
					hs.GetScore(), hs.GetBand(), hs.GetLifecycleStage(), hs.GetScorecardChanged()))
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
	}
	slices.Sort(lines)
	return len(lines), os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}
