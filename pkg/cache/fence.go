package cache

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Fence is a partition owner's fencing token: every write of a Fenced cache
// checks that no later owner of the partition has written to the tenant.
type Fence struct {
	Partition uint32
	// Epoch orders the partition's owners (pkg/ownership's lease epoch).
	Epoch uint64
}

// ErrFenced is returned for a write refused because a later owner of the
// partition (a higher epoch) has written: this writer lost the partition.
var ErrFenced = errors.New("fenced: a later owner of the partition has written")

// fencePrelude starts a fenced script: the fence key is the last of KEYS and
// the epoch the last of ARGV (removed, so the script body sees its own
// arguments). Redis runs a script alone, so the check and the write are one
// step: a write of epoch e after one of epoch e' > e is refused, whichever
// client is first to reach Redis. The fence key carries the tenant's hash
// tag, so a script stays within the slot of the keys it writes.
const fencePrelude = `
local fence, epoch = KEYS[#KEYS], table.remove(ARGV)
local cur = redis.call('GET', fence)
if cur and tonumber(cur) > tonumber(epoch) then return redis.error_reply('FENCED epoch ' .. cur) end
if not cur or tonumber(cur) < tonumber(epoch) then redis.call('SET', fence, epoch) end
`

// fencedSetScript is SET under a fence. KEYS: the score, the fence. ARGV:
// the encoded score, the epoch.
const fencedSetScript = fencePrelude + `
redis.call('SET', KEYS[1], ARGV[1])
return 0
`

// Fenced returns the cache for the owner of a partition at an epoch: its
// writes (SetScores, IndexScores, PutScores) are refused with ErrFenced once
// a later owner of the partition wrote to the same tenant. The new owner
// claims its tenants when it starts (Claim), and every write claims its
// tenant, so a replica that lost the partition during a pause cannot
// overwrite the scores of its successor. Reads are the same as r's.
func (r *Redis) Fenced(f Fence) *Redis {
	c := *r
	c.fence = &f
	c.put = redis.NewScript(fencePrelude + putScript)
	c.set = redis.NewScript(fencedSetScript)
	return &c
}

// claimScript raises a fence to the epoch, or fails if it is above it.
// KEYS: the fence. ARGV: the epoch.
const claimScript = fencePrelude + `return 0`

// Claim sets the fence of each tenant to the Fenced cache's epoch, so that
// the previous owner's writes are refused from now on even for tenants this
// owner has not written yet. It fails with ErrFenced if a later owner
// claimed one already.
func (r *Redis) Claim(ctx context.Context, tenants []string) error {
	if r.fence == nil || len(tenants) == 0 {
		return nil
	}
	claim := redis.NewScript(claimScript)
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, t := range tenants {
			claim.Eval(ctx, p, []string{r.fenceKey(t)}, r.epoch())
		}
		return nil
	})
	return fencedErr(err)
}

func (r *Redis) fenceKey(tenant string) string {
	return r.tenantKey(tenant) + "fence:" + strconv.FormatUint(uint64(r.fence.Partition), 10)
}

func (r *Redis) epoch() string { return strconv.FormatUint(r.fence.Epoch, 10) }

// fencedErr turns a script's FENCED reply into ErrFenced.
func fencedErr(err error) error {
	if redis.HasErrorPrefix(err, "FENCED") {
		return fmt.Errorf("%w (%v)", ErrFenced, err)
	}
	return err
}
