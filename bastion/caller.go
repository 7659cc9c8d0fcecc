package bastion

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/termtext"
)

// How the person behind a request to serve's sockets is known: the values
// of the identity.verified and operator.verified attributes.
const (
	// VerifiedToken: serve verified an OIDC token the caller gave, with
	// its configured identity providers.
	VerifiedToken = "token"
	// VerifiedAccount: the caller's OS account (as the kernel reports
	// it) maps to an identity in the configuration's operator_accounts.
	VerifiedAccount = "account"
	// VerifiedNone: only the caller's OS account is known.
	VerifiedNone = "none"
	// VerifiedConsole: the person signed in to the web console, whose ID
	// token serve verified at the sign-in; no OS account is involved.
	VerifiedConsole = "console"
)

// A caller is who asks through the admin or the access socket: the
// process the kernel reports, and the person when a token or the
// configuration names one.
type caller struct {
	*peer
	user string // the account name of uid, "" when it has none
	says string // who the client says it is: never trusted, kept apart
	// verified is one of the Verified constants. identity is the person
	// (SUBJECT@PROVIDER), "" for VerifiedNone; issuer is the token's
	// issuer, for VerifiedToken only.
	verified, identity, issuer string
	// id is the identity policy matches (for an account, only its
	// provider and subject are known); nil for VerifiedNone.
	id *policy.Identity
}

// maxSays bounds what a caller's own claim about itself keeps.
const maxSays = 256

// identify names the caller behind p: the identity token proves (a token
// that does not verify is an error: nothing is done on its behalf), else
// the one its account maps to, else only the account.
func (s *Server) identify(ctx context.Context, p *peer, token, says string) (*caller, error) {
	c := &caller{peer: p, user: p.account(), says: capText(termtext.OneLine(says), maxSays), verified: VerifiedNone}
	if token != "" {
		id, err := s.verifier.Verify(ctx, strings.TrimSpace(token))
		if err != nil {
			return nil, fmt.Errorf("the token does not verify: %w", err)
		}
		c.verified, c.identity, c.issuer, c.id = VerifiedToken, id.String(), id.Issuer, id
		return c, nil
	}
	if m := s.operatorAccounts.Load(); m != nil && c.user != "" {
		if ident, ok := (*m)[c.user]; ok {
			i := strings.LastIndexByte(ident, '@')
			c.verified, c.identity = VerifiedAccount, ident
			c.id = &policy.Identity{Subject: ident[:i], Provider: ident[i+1:]}
			c.id.Issuer = s.providerIssuer(c.id.Provider)
		}
	}
	return c, nil
}

// providerIssuer is the issuer URL of the configured provider name, ""
// for none. Providers change only with a restart.
func (s *Server) providerIssuer(name string) string {
	if name == DevProviderName && s.devURL != "" {
		return s.devURL
	}
	for _, p := range s.opts.Config.Providers {
		if p.Name == name {
			return p.Issuer
		}
	}
	return ""
}

// accountText is "uid N NAME, pid P", the kernel's account of the caller.
func (c *caller) accountText() string {
	if c.user == "" {
		return fmt.Sprintf("uid %d, pid %d", c.uid, c.pid)
	}
	return fmt.Sprintf("uid %d %s, pid %d", c.uid, c.user, c.pid)
}

// by is the caller as the journal's human-readable "by" and the log name
// them: "alice@corp (token; uid 0 root, pid 123)", or without a person
// "uid 0 root, pid 123 (says root)".
func (c *caller) by() string {
	if c.identity != "" {
		return fmt.Sprintf("%s (%s; %s)", c.identity, c.verified, c.accountText())
	}
	if c.says != "" {
		return c.accountText() + " (says " + c.says + ")"
	}
	return c.accountText()
}

// operatorAttrs are the attributes an operator action's leaf names its
// operator with: operator (absent when only the account is known),
// operator.verified, operator.issuer (for a token), operator.uid,
// operator.user and operator.pid (as the kernel reports them).
func (c *caller) operatorAttrs() recorder.Attrs {
	a := recorder.Attrs{
		"operator.verified": c.verified,
		"operator.uid":      strconv.Itoa(c.uid),
		"operator.pid":      strconv.Itoa(c.pid),
	}
	if c.user != "" {
		a["operator.user"] = c.user
	}
	if c.identity != "" {
		a["operator"] = c.identity
	}
	if c.issuer != "" {
		a["operator.issuer"] = c.issuer
	}
	return a
}

// whoAttrs are the attributes a read's leaf names its reader with, when
// serve records it: for a caller of the access socket (c.peer set), via
// serve and the kernel's uid, user and pid; serve's host, the client's
// own claim as says.user, and the identity and its roles in the policy in
// force (reader.role: auditor, operator). A reader through the API or the
// console has no peer: its caller sets via, and the client's address.
func (c *caller) whoAttrs(pol *policy.Policy, host string) recorder.Attrs {
	a := recorder.Attrs{"identity.verified": c.verified}
	if c.peer != nil {
		a["via"] = ViaServe
		a["uid"] = strconv.Itoa(c.uid)
		a["pid"] = strconv.Itoa(c.pid)
	}
	if c.user != "" {
		a["user"] = c.user
	}
	if host != "" {
		a["host"] = host
	}
	if c.says != "" {
		a["says.user"] = c.says
	}
	if c.identity != "" {
		a["identity"] = c.identity
	}
	if c.issuer != "" {
		a["identity.issuer"] = c.issuer
	}
	if r := c.roles(pol); r != "" {
		a["reader.role"] = r
	}
	return a
}

// roles are the caller's roles in pol, comma-separated: auditor,
// operator; "" for none, or when no identity is known.
func (c *caller) roles(pol *policy.Policy) string {
	if c.id == nil || pol == nil {
		return ""
	}
	var r []string
	if pol.Auditor(c.id) {
		r = append(r, "auditor")
	}
	if pol.Operator(c.id) {
		r = append(r, "operator")
	}
	return strings.Join(r, ",")
}

// Values of the via attribute of journal.accessed, evidence.generated and
// ca.rotated: who wrote the leaf.
const (
	// ViaServe: the running serve, for the caller of its socket.
	ViaServe = "serve"
	// ViaReader: the reading process itself, which held the journal (no
	// writer was running).
	ViaReader = "reader"
	// ViaCLI: "bastion ca rotate" itself, when no serve was running.
	ViaCLI = "cli"
)

// capText cuts s to at most n bytes, at a character boundary, noting how
// long it was, as capClientText does for the front door's events.
func capText(s string, n int) string {
	a := recorder.Attrs{"v": s}
	a.Cap(n, "v")
	return a["v"]
}
