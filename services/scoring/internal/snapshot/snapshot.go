// Package snapshot saves the scoring core's state, with the EVENTS stream
// sequence it reflects, in a JetStream object store, so a restart restores it
// and replays only the rest of the stream. A snapshot only makes restarts
// fast: without one, scoring replays the stream from the start.
package snapshot

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the object store bucket of snapshots.
const Bucket = "SCORING_SNAPSHOTS"

// magic starts every snapshot; its last byte is the format version.
var magic = [8]byte{'L', 'S', 'S', 'N', 'A', 'P', 0, 1}

// ErrNone means no snapshot is stored under the name.
var ErrNone = errors.New("no snapshot")

// BucketConfig is the bucket's configuration.
func BucketConfig(replicas int) jetstream.ObjectStoreConfig {
	return jetstream.ObjectStoreConfig{
		Bucket:      Bucket,
		Description: "Scoring state snapshots with the EVENTS sequence they reflect",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// Store saves and loads snapshots.
type Store struct {
	obj jetstream.ObjectStore
}

// New returns a store over the bucket.
func New(obj jetstream.ObjectStore) *Store { return &Store{obj: obj} }

// Save stores state, which reflects the EVENTS stream up to and including
// seq, under name, replacing the previous snapshot.
func (s *Store) Save(ctx context.Context, name string, seq uint64, state []byte) error {
	var hdr [16]byte
	copy(hdr[:8], magic[:])
	binary.BigEndian.PutUint64(hdr[8:], seq)
	r := bytes.NewReader(append(hdr[:], state...))
	if _, err := s.obj.Put(ctx, jetstream.ObjectMeta{Name: name}, r); err != nil {
		return fmt.Errorf("save snapshot %s: %w", name, err)
	}
	return nil
}

// Load returns the snapshot stored under name and its sequence, or ErrNone.
func (s *Store) Load(ctx context.Context, name string) (seq uint64, state []byte, err error) {
	b, err := s.obj.GetBytes(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return 0, nil, ErrNone
	}
	if err != nil {
		return 0, nil, fmt.Errorf("load snapshot %s: %w", name, err)
	}
	if len(b) < 16 || !bytes.Equal(b[:8], magic[:]) {
		return 0, nil, fmt.Errorf("load snapshot %s: not a snapshot of this format", name)
	}
	return binary.BigEndian.Uint64(b[8:16]), b[16:], nil
}
