package bastion

import (
	"encoding/json"
	"sync"

	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/mask"
	"github.com/bastionhq/bastion/recorder/termtext"
)

// maxClientText bounds what the journal keeps of a piece of text a
// caller chose (a session ID, an identity, a grant ID): a leaf must cost
// a bounded number of bytes.
const maxClientText = 256

// printable keeps one line of text a client's terminal can show safely.
func printable(s string) string {
	return termtext.CapRunes(termtext.OneLine(s), 200)
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
