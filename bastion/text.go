package bastion

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/mask"
	"github.com/bastionhq/bastion/recorder"
)

// The server's own copies of the front door's text helpers (package
// front keeps its own): what operators and readers send through the
// sockets is kept and shown the way the front door keeps what clients
// send.

// maxClientText bounds what the journal keeps of a piece of text a
// caller chose (a session ID, an identity, a grant ID): a leaf must cost
// a bounded number of bytes.
const maxClientText = 256

// capAttrs cuts the attributes keys of a to n bytes at most, at a
// character boundary, noting how long they were; a value within the
// bound, one cut before included, is left as it is.
func capAttrs(a recorder.Attrs, n int, keys ...string) {
	for _, k := range keys {
		v, ok := a[k]
		if !ok || len(v) <= n {
			continue
		}
		note := "… (" + strconv.Itoa(len(v)) + " bytes)"
		cut := n - len(note)
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		a[k] = v[:cut] + note
	}
}

// printable keeps one line of text a client's terminal can show safely.
func printable(s string) string {
	return capRunes(oneLine(s), 200)
}

// killReason is an operator's reason for a kill as it is logged: on one
// line, its values masked with m (before it is cut to 200 characters, so
// that a value across the cut is masked too), and the "masked" attribute
// that says what was. The front door keeps and tells it the same way.
func killReason(m *mask.Masker, reason string) (string, string) {
	a := map[string]string{"kill-reason": oneLine(reason)}
	masked := m.Fields(a, "kill-reason")
	return capRunes(a["kill-reason"], 200), masked
}

// oneLine drops control characters from s, line breaks and tabs
// becoming spaces, and trims it.
func oneLine(s string) string {
	var b strings.Builder
	for _, r := range strings.TrimSpace(s) {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		case r < ' ' || r == 0x7f || r >= 0x80 && r < 0xa0:
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// capRunes cuts s to at most n runes.
func capRunes(s string, n int) string {
	if out := []rune(s); len(out) > n {
		return string(out[:n])
	}
	return s
}

// textMaskers compiles the policy's text_masking profile once per
// content (a profile changed by a reload is compiled again).
type textMaskers struct {
	mu sync.Mutex
	m  map[string]*mask.Masker // guarded by mu; by the profile's content
}

// text returns the masker for the free text operators and identities
// supply: the policy's text_masking (every built-in detector unless the
// policy says otherwise); nil when the policy turns it off. It fails
// closed: a profile that cannot be compiled (the policy's load checked
// it, so this is a bug) masks with every built-in detector.
func (ms *textMaskers) text(pol *policy.Policy) *mask.Masker {
	p, ok := pol.TextMaskingProfile()
	if !ok {
		return nil
	}
	key, err := json.Marshal(p)
	if err != nil {
		return mask.All()
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if m, ok := ms.m[string(key)]; ok {
		return m
	}
	m, err := mask.Compile(p)
	if err != nil {
		return mask.All()
	}
	if ms.m == nil {
		ms.m = map[string]*mask.Masker{}
	}
	ms.m[string(key)] = m
	return m
}
