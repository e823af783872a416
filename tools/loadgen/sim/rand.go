package sim

import (
	"encoding/hex"
	"math"
	"math/rand/v2"
)

// Tags keep the random streams of different purposes apart.
const (
	tagFates uint64 = iota + 1
	tagNames
	tagAccount
	tagHour
	tagDay
	tagID
)

// mix hashes values into one 64-bit key with the splitmix64 finaliser, so
// that nearby inputs (account 1 and 2, hour h and h+1) give unrelated keys.
func mix(vs ...uint64) uint64 {
	h := uint64(0x9e3779b97f4a7c15)
	for _, v := range vs {
		h ^= v
		h += 0x9e3779b97f4a7c15
		h = (h ^ h>>30) * 0xbf58476d1ce4e5b9
		h = (h ^ h>>27) * 0x94d049bb133111eb
		h ^= h >> 31
	}
	return h
}

// newRand returns the random stream named by keys.
func newRand(keys ...uint64) *rand.Rand {
	k := mix(keys...)
	return rand.New(rand.NewPCG(k, mix(k)))
}

// uniform draws from [lo, hi).
func uniform(r *rand.Rand, lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }

// logNormal draws a log-normal value with the given median and shape: the
// heavy tail of account sizes.
func logNormal(r *rand.Rand, median, sigma float64) float64 {
	return median * math.Exp(sigma*r.NormFloat64())
}

// pick draws one element.
func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// messageID formats the key of an event as a UUID of version 8 (RFC 9562's
// version for custom, here hash-based, UUIDs): unique per event, and the
// same for the same event of the same product.
func messageID(keys ...uint64) string {
	hi, lo := mix(keys...), mix(append(keys, tagID)...)
	var b [16]byte
	for i := range 8 {
		b[i] = byte(hi >> (56 - 8*i))
		b[8+i] = byte(lo >> (56 - 8*i))
	}
	b[6] = b[6]&0x0f | 0x80 // version 8
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}
