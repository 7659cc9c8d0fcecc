// Package policy decides who may do what through the bastion: which logins
// an identity's certificate names, for how long, with which extensions;
// which targets it may reach as which logins, with a PTY, a shell, file
// transfer, port forwards and which exec commands; and which just-in-time
// grants it may ask for and who approves them. Decisions are pure
// functions of their inputs and always say which rule decided.
//
// # Language
//
// A policy is HCL ([Load], [Decode]): "identity" blocks name identity
// matchers, and "role" blocks grant the identities they match targets ×
// logins, standing or only under an active grant. Default deny; among the
// roles that apply, a deny pattern of any one wins; otherwise the first
// role in policy order that allows decides.
//
// # Review
//
// What a policy allows must be reviewable from the journal alone:
// [Policy.Text] is the policy as it was loaded, and [Policy.RoleViews]
// ([Policy.RolesJSON] as JSON) its roles with every default explicit and
// every named identity expanded. A sponsor is a free string;
// [SponsorMatches] and [SponsorConflict] say how it is compared with an
// identity, for an approval's exclude_sponsor and for reviewers.
//
// The package knows nothing of SSH, HTTP or SQLite: certauth asks it what a
// certificate may carry; the front door asks it what a session may do.
package policy

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Identity is an authenticated principal: one subject of one issuer, with
// the claims its token carried. Issuer and Subject together are unique; the
// rest is what policy may match on and what the journal attributes actions
// to.
type Identity struct {
	// Provider is the configured name of the identity provider that
	// vouched for the token (for example "corp" or "github-actions").
	Provider string
	// Issuer is the token's "iss", exactly as verified.
	Issuer string
	// Subject is the token's "sub".
	Subject string
	// Email and Groups are copied from the provider's mapped claims, if any.
	Email  string
	Groups []string
	// Claims are the token's claims as decoded from JSON (string, float64,
	// bool, []any, map[string]any), for matching custom claims such as
	// "repository", "ref", "namespace" or "service_account".
	Claims map[string]any
	// Sponsor names the human or team on whose behalf an agent acts: the
	// RFC 8693 "act" claim's subject, a configured claim, or a mapping in
	// policy. Empty for a human acting for themselves.
	Sponsor string
	// IssuedAt and Expiry are the token's "iat" and "exp".
	IssuedAt time.Time
	Expiry   time.Time
}

// String is the identity's display form, "subject@provider": short enough
// for a certificate key ID and an sshd log line, unique among configured
// providers because each provider has exactly one issuer.
func (id *Identity) String() string {
	return id.Subject + "@" + id.Provider
}

// Claim returns claim name as a list of strings: a string claim is one
// element, a list of strings is itself, numbers and booleans are formatted,
// anything else (objects, nested lists) matches nothing. A dotted name looks
// inside objects ("act.sub").
func (id *Identity) Claim(name string) []string {
	var v any = id.Claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v, ok = m[part]
		if !ok {
			return nil
		}
	}
	return claimStrings(v)
}

// claimMatches reports whether some value of claim name matches one of
// the glob patterns: Claim without building the list.
func (id *Identity) claimMatches(name string, pats []string) bool {
	var v any = id.Claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if v, ok = m[part]; !ok {
			return false
		}
	}
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok && globAny(pats, s) {
				return true
			}
		}
		return false
	case []string:
		for _, s := range v {
			if globAny(pats, s) {
				return true
			}
		}
		return false
	}
	for _, s := range claimStrings(v) {
		if globAny(pats, s) {
			return true
		}
	}
	return false
}

func claimStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case bool:
		if v {
			return []string{"true"}
		}
		return []string{"false"}
	case float64:
		return []string{strconv.FormatFloat(v, 'f', -1, 64)}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return v
	}
	return nil
}

// WriteAttrs writes id into a as the journal records an identity that acts:
// identity (its String), provider, issuer, subject, token.subject (a
// delegation token's own "sub", when it is not Subject), sponsor, email,
// groups (comma-separated), token.claims (the token's claims as JSON, so
// that decisions made later match on the claims the action was taken on)
// and token.issued_at (RFC 3339); sponsor, email, groups and the token's
// claims and time only when it has them.
func (id *Identity) WriteAttrs(a map[string]string) {
	a["identity"] = id.String()
	a["provider"] = id.Provider
	a["issuer"] = id.Issuer
	a["subject"] = id.Subject
	if sub, _ := id.Claims["sub"].(string); sub != id.Subject {
		a["token.subject"] = sub // a delegation token: its "sub" is the sponsor
	}
	if id.Sponsor != "" {
		a["sponsor"] = id.Sponsor
	}
	if id.Email != "" {
		a["email"] = id.Email
	}
	if len(id.Groups) > 0 {
		a["groups"] = strings.Join(id.Groups, ",")
	}
	// A verified token is bounded in size, so its claims are too.
	if len(id.Claims) > 0 {
		if b, err := json.Marshal(id.Claims); err == nil {
			a["token.claims"] = string(b)
		}
	}
	if !id.IssuedAt.IsZero() {
		a["token.issued_at"] = id.IssuedAt.UTC().Format(time.RFC3339)
	}
}
