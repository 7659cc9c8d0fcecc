package certauth

import (
	"strconv"
	"testing"
	"time"
)

// The refusals a Limiters remembers (to journal one a key a minute) are
// bounded as its buckets are: past maxLimiters keys within the minute, a
// new key's refusal is only logged, and the table does not grow.
func TestFirstRefusalBounded(t *testing.T) {
	ls := NewLimiters(1, 1, 1, 1)
	now := time.Unix(1_800_000_000, 0)
	for i := range maxLimiters {
		if !ls.FirstRefusal("k"+strconv.Itoa(i), now) {
			t.Fatalf("key %d's first refusal was not the first", i)
		}
	}
	if ls.FirstRefusal("one more", now) {
		t.Error("a new key past the bound was to be journaled")
	}
	if ls.FirstRefusal("k0", now.Add(30*time.Second)) {
		t.Error("a key's second refusal within the minute was to be journaled")
	}
	if n := len(ls.refused); n > maxLimiters {
		t.Errorf("the table holds %d keys, past the bound %d", n, maxLimiters)
	}
	// Once the minute has passed the table is swept, and new keys count.
	if !ls.FirstRefusal("later", now.Add(11*time.Minute)) {
		t.Error("a new key after the sweep was not journaled")
	}
}
