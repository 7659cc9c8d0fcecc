package mask

import (
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Text masks s as a whole piece of text (a command line, a reason typed
// into a form): the values in it are masked as a [Stream] would mask them
// if s were all of its output. It returns the masked text, of the same
// length, and the values masked, their offsets counted in s. A nil Masker
// returns s unchanged.
func (m *Masker) Text(s string) (string, []Hit) {
	if m == nil || s == "" || !m.Enabled() {
		return s, nil
	}
	st := m.NewStream()
	out, hits := st.Write([]byte(s))
	masked := slices.Clone(out)
	hits = slices.Clone(hits)
	out, h2 := st.Close()
	masked = append(masked, out...)
	hits = append(hits, h2...)
	return string(masked), hits
}

// Fields masks, in place, the values of the keys of a that are named (a
// key a does not hold is skipped), each as one whole piece of text, and
// says what it masked in a's "masked" attribute, merged with what that
// already says: for each key and detector with a value masked,
// "KEY:DETECTOR:COUNT", sorted, joined by commas. Keys and detector names
// hold no ':' or ',', so the list splits unambiguously. It returns what
// this call masked, in the same form ("" for nothing). A nil Masker masks
// nothing.
//
// This is the "masked" attribute of a journal leaf (see the journal
// format): it says that a value was there, never what it was.
func (m *Masker) Fields(a map[string]string, keys ...string) string {
	if m == nil {
		return ""
	}
	var parts []string
	for _, k := range keys {
		v, ok := a[k]
		if !ok || k == MaskedKey {
			continue
		}
		masked, hits := m.Text(v)
		if len(hits) == 0 {
			continue
		}
		a[k] = masked
		parts = append(parts, Summary(k, hits)...)
	}
	if len(parts) == 0 {
		return ""
	}
	slices.Sort(parts)
	sum := strings.Join(slices.Compact(parts), ",")
	a[MaskedKey] = JoinSummaries(a[MaskedKey], sum)
	return sum
}

// MaskedKey is the attribute in which [Masker.Fields] says what it masked.
const MaskedKey = "masked"

// Summary counts hits by detector, as "WHAT:DETECTOR:COUNT" entries
// sorted by detector, for a "masked" attribute that names what was
// masked in something called what.
func Summary(what string, hits []Hit) []string {
	count := map[string]int{}
	for _, h := range hits {
		count[h.Detector]++
	}
	parts := make([]string, 0, len(count))
	for d, n := range count {
		parts = append(parts, what+":"+d+":"+strconv.Itoa(n))
	}
	slices.Sort(parts)
	return parts
}

// All is a Masker of every built-in detector (the "all" profile),
// compiled once: what masks text when nothing says otherwise.
var All = sync.OnceValue(func() *Masker {
	p, _ := BuiltinProfile("all")
	m, err := Compile(p)
	if err != nil {
		panic("mask: the built-in profile does not compile: " + err.Error())
	}
	return m
})

// Configured is the masker f returns or, without an f, All: free text is
// masked unless configuration says otherwise. A nil masker from f masks
// nothing.
func Configured(f func() *Masker) *Masker {
	if f != nil {
		return f()
	}
	return All()
}

// JoinSummaries merges "masked" attribute values (as Fields returns them)
// into one, sorted; empty ones are skipped.
func JoinSummaries(s ...string) string {
	var parts []string
	for _, x := range s {
		if x != "" {
			parts = append(parts, strings.Split(x, ",")...)
		}
	}
	slices.Sort(parts)
	return strings.Join(slices.Compact(parts), ",")
}
