package policy

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2/hclwrite"

	"github.com/bastionhq/bastion/policy/mask"
)

// The staff of the bastion, defined once in policy by identity matchers:
// its operators and its auditors. The admin socket and the access socket
// of "bastion serve" name their callers with them (and the web console
// will), and the journal's policy.loaded leaf carries them.

// resolveStaff returns the identity matchers names (the policy's attribute
// attr) refer to, reporting a name that is no identity block at its place
// in pos.
func resolveStaff(p *Policy, attr string, names []string, pos *blockPos, d *diagnostics) []IdentityMatcher {
	var out []IdentityMatcher
	for i, name := range names {
		m, ok := p.identities[name]
		if !ok {
			d.errorf(pos.at(attr, i), "%s names identity %q, which is not defined", attr, name)
			continue
		}
		if slices.ContainsFunc(out, func(im IdentityMatcher) bool { return im.Name == name }) {
			continue
		}
		out = append(out, IdentityMatcher{Name: name, Match: *m})
	}
	return out
}

// Operator reports whether id is one of the bastion's operators: an
// identity one of the identity blocks the policy's "operators" attribute
// names matches. It is false for every identity when the policy names no
// operators (see [Policy.Operators]).
func (p *Policy) Operator(id *Identity) bool { return p != nil && matchesAny(p.operators, id) }

// Auditor reports whether id is one of the bastion's auditors, as
// [Policy.Operator] does for the "auditors" attribute.
func (p *Policy) Auditor(id *Identity) bool { return p != nil && matchesAny(p.auditors, id) }

// Approver reports whether id may approve some role's grants: one of the
// identity matchers a role's approval block names matches it.
func (p *Policy) Approver(id *Identity) bool {
	if p == nil || id == nil {
		return false
	}
	for _, c := range p.byName {
		for _, m := range c.approvers {
			if m.matches(id) {
				return true
			}
		}
	}
	return false
}

// OperatorMatchers returns the identity matchers the "operators" attribute
// names, in its order (a copy); nil when it is not set.
func (p *Policy) OperatorMatchers() []IdentityMatcher { return cloneMatchers(p.operators) }

// AuditorMatchers returns the identity matchers the "auditors" attribute
// names, in its order (a copy); nil when it is not set.
func (p *Policy) AuditorMatchers() []IdentityMatcher { return cloneMatchers(p.auditors) }

func matchesAny(ms []IdentityMatcher, id *Identity) bool {
	if id == nil {
		return false
	}
	for i := range ms {
		if ms[i].Match.matches(id) {
			return true
		}
	}
	return false
}

func cloneMatchers(ms []IdentityMatcher) []IdentityMatcher {
	if ms == nil {
		return nil
	}
	out := make([]IdentityMatcher, len(ms))
	for i, m := range ms {
		out[i] = IdentityMatcher{Name: m.Name, Match: Match{
			Providers: slices.Clone(m.Match.Providers),
			Subjects:  slices.Clone(m.Match.Subjects),
			Sponsors:  slices.Clone(m.Match.Sponsors),
			Claims:    cloneClaims(m.Match.Claims),
		}}
	}
	return out
}

func cloneClaims(c map[string][]string) map[string][]string {
	if c == nil {
		return nil
	}
	out := make(map[string][]string, len(c))
	for k, v := range c {
		out[k] = slices.Clone(v)
	}
	return out
}

// StaffJSON is the identity matchers the policy's "operators" and
// "auditors" attributes name, each as a JSON array of [MatcherView]s
// (the journal's policy.loaded "operators.json" and "auditors.json"),
// nil for an attribute the policy does not set. With a masker, every
// string in them is masked first, as [Policy.RolesJSON] does, and the
// values hidden are returned.
func (p *Policy) StaffJSON(m *mask.Masker) (operators, auditors []byte, operatorHits, auditorHits []mask.Hit) {
	operators, operatorHits = staffJSON(p.Operators, p.operators, m)
	auditors, auditorHits = staffJSON(p.Auditors, p.auditors, m)
	return operators, auditors, operatorHits, auditorHits
}

func staffJSON(names []string, ms []IdentityMatcher, m *mask.Masker) ([]byte, []mask.Hit) {
	if names == nil {
		return nil, nil
	}
	views := make([]MatcherView, 0, len(ms))
	var hits []mask.Hit
	for i := range ms {
		v := matcherView(ms[i].Name, &ms[i].Match)
		hits = append(hits, maskStrings(m, func(f func(*string)) { eachMatcherString(&v, f) })...)
		views = append(views, v)
	}
	return compactJSON(views), hits
}

// maskStrings masks, with m (nil: nothing), every string each hands its
// function, and returns the values hidden.
func maskStrings(m *mask.Masker, each func(func(*string))) []mask.Hit {
	if m == nil {
		return nil
	}
	var hits []mask.Hit
	each(func(s *string) {
		masked, h := m.Text(*s)
		*s = masked
		hits = append(hits, h...)
	})
	return hits
}

// compactJSON is v as JSON without insignificant white space or HTML
// escaping. Only the policy's views go through it: strings, bools,
// numbers, slices and maps of strings, which always encode.
func compactJSON(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("policy: encode for the journal: " + err.Error())
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func eachMatcherString(v *MatcherView, f func(*string)) {
	f(&v.Name)
	for _, list := range [][]string{v.Providers, v.Subjects, v.Sponsors} {
		for i := range list {
			f(&list[i])
		}
	}
	for _, pats := range v.Claims {
		for i := range pats {
			f(&pats[i])
		}
	}
}

// renderStaff writes the operators and auditors attributes in the policy
// language, "" when the policy sets neither.
func renderStaff(operators, auditors []string) string {
	if operators == nil && auditors == nil {
		return ""
	}
	f := hclwrite.NewEmptyFile()
	for _, a := range []struct {
		name  string
		names []string
	}{{"operators", operators}, {"auditors", auditors}} {
		if a.names == nil {
			continue
		}
		f.Body().SetAttributeValue(a.name, stringList(a.names))
	}
	return strings.TrimSpace(string(f.Bytes())) + "\n"
}
