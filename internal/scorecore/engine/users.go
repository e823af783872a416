package engine

import "math/bits"

// userTable holds an account's users keyed by a 64-bit hash of the user id, in one
// open-addressed slice with linear probing. Apply looks a user up for nearly every
// event, across many accounts whose tables are not in cache: here that costs one
// cache miss, where a Go map costs one per level of header, directory, table and
// group. A slot takes 24 bytes and a table is kept 7/16 to 7/8 full (from 8 slots
// on), so a user takes at most 55 bytes, no more than in a Go map.
type userTable struct {
	// Slots has a power of two length, or none; a zero Key marks a free slot.
	Slots []userSlot
	// N counts the users.
	N int
}

type userSlot struct {
	Key  uint64
	User user
}

// userKey is the table key of a user id; 0 marks free slots, so it is moved to 1
// (a collision like any other of the 64-bit hash).
func userKey(id string) uint64 {
	return max(hashString(id), 1)
}

// home is the first slot to probe for key: Fibonacci hashing, so that the slot
// depends on every bit of the key.
func (t *userTable) home(key uint64) int {
	return int((key * 0x9E3779B97F4A7C15) >> (64 - bits.TrailingZeros(uint(len(t.Slots)))))
}

// get returns the user of key, nil when absent.
func (t *userTable) get(key uint64) *user {
	if t.N == 0 {
		return nil
	}
	mask := len(t.Slots) - 1
	for i := t.home(key); ; i = (i + 1) & mask {
		switch s := &t.Slots[i]; s.Key {
		case key:
			return &s.User
		case 0:
			return nil
		}
	}
}

// add inserts a user that get did not find and returns it, zero.
func (t *userTable) add(key uint64) *user {
	if (t.N+1)*8 > len(t.Slots)*7 {
		t.resize(max(8, 2*len(t.Slots)))
	}
	t.N++
	return t.place(key)
}

// place puts key in its first free slot; the table has room.
func (t *userTable) place(key uint64) *user {
	mask := len(t.Slots) - 1
	i := t.home(key)
	for t.Slots[i].Key != 0 {
		i = (i + 1) & mask
	}
	t.Slots[i].Key = key
	return &t.Slots[i].User
}

func (t *userTable) resize(size int) {
	old := t.Slots
	t.Slots = make([]userSlot, size)
	for _, s := range old {
		if s.Key != 0 {
			*t.place(s.Key) = s.User
		}
	}
}

// removeIf drops the users for which drop is true, into a table sized for the
// others.
func (t *userTable) removeIf(drop func(user) bool) {
	old := t.Slots
	n := 0
	for _, s := range old {
		if s.Key != 0 && !drop(s.User) {
			n++
		}
	}
	size := 0
	for size < 8 || n*8 > size*7 {
		size = max(8, 2*size)
	}
	if n == 0 {
		size = 0
	}
	t.Slots, t.N = make([]userSlot, size), n
	for _, s := range old {
		if s.Key != 0 && !drop(s.User) {
			*t.place(s.Key) = s.User
		}
	}
}

// valid checks a decoded table: a power of two long, with a free slot (else a
// missing key's probe would not end), holding N users.
func (t *userTable) valid() bool {
	size := len(t.Slots)
	if size&(size-1) != 0 || t.N >= size && size > 0 {
		return false
	}
	n := 0
	for _, s := range t.Slots {
		if s.Key != 0 {
			n++
		}
	}
	return n == t.N
}
