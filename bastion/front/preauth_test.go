package front

import (
	"net/netip"
	"testing"
)

// TestRefusalBudgetBounded: however many addresses refuse, the budget
// keeps at most 4·max of them apart; the rest are counted, untracked, in
// the summary of the others, and every refusal is accounted for.
func TestRefusalBudgetBounded(t *testing.T) {
	t.Parallel()
	b := newRefusalBudget(2, 1)
	whole := 0
	for i := range 1000 {
		key := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 32)
		if b.take(key, map[string]int{"x": 1}) {
			whole++
		}
	}
	if whole != 2 || len(b.pending) > 8 {
		t.Fatalf("%d whole, %d addresses kept", whole, len(b.pending))
	}
	counted, untracked := 0, 0
	sums := b.flush()
	for _, s := range sums {
		counted += s.count
		untracked += s.untracked
	}
	if len(sums) > 3 || counted != 998 || untracked != 998-8 {
		t.Fatalf("%d summaries, %d counted, %d untracked", len(sums), counted, untracked)
	}
}
