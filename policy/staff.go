package policy

import "slices"

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
