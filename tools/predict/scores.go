package main

import (
	"context"
	"fmt"
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
	// TimedOut is true when the wait ended at its timeout, before every
	// account was scored or their number settled.
	TimedOut bool
	// Wait is how long it took from the last event sent.
	Wait time.Duration
}

// settle is how long the number of scored accounts must stay unchanged, after
// scoring applied every event, for the rest to count as not scored: scoring
// flushes every 50 ms and sets a due account's score at the next flush.
const settle = 2 * time.Second

// waitScores waits until scoring has applied every event sent and every
// account has a score of the watermark's day, or the number of such
// accounts has settled, at most timeout; and returns those scores.
func waitScores(ctx context.Context, l *lodestar, r *scoreReader, sent int, ids []string, day time.Time, timeout time.Duration) (*caughtUp, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	if err := l.drain(ctx, sent, timeout); err != nil {
		return nil, err
	}
	last, since := -1, time.Now()
	for {
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
		n := len(res.Scores)
		if n != last {
			last, since = n, time.Now()
		}
		if n == len(ids) || time.Since(since) >= settle {
			return res, nil
		}
		if time.Now().After(deadline) {
			res.TimedOut = true
			return res, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
