package bastion

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/bastionhq/bastion/bastion/console"
	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/recorder"
)

// consoleKill is a kill asked from the web console: the admin socket's
// POST /v1/sessions/kill (the CLI's "bastion sessions kill") for a person
// signed in there. The person is one of the policy's operators, or the
// kill is refused and the refusal journaled (admin.refused), as the admin
// socket refuses one. The end leaf names them as the CLI's does, with
// operator.verified = console in place of the socket peer's account.
func (s *Server) consoleKill(ctx context.Context, k console.KillRequest) (front.LiveSession, error) {
	attrs, by := consoleOperator(k.Who, k.Session, k.Client)
	if pol := s.Policy(); !pol.Operator(k.Who) {
		err := fmt.Errorf("%w: %s is not one of the operators the policy names (%s)", ErrNotOperator, k.Who.String(), strings.Join(pol.Operators, ", "))
		attrs["by"] = by
		s.journalRefused(ctx, "console", "kill", attrs, recorder.Attrs{"session": k.ID}, err)
		return front.LiveSession{}, err
	}
	l, err := s.KillSession(ctx, k.ID, k.Reason, by, attrs)
	return l.LiveSession, err
}

// consoleOperator names the console's person as an operator action's
// leaf does (see caller.operatorAttrs): operator, operator.verified =
// console, operator.issuer, console.session (the console session's
// public reference) and operator.client (the address of the browser's
// request). There is no socket peer, so no operator.uid, operator.user
// or operator.pid. by is the human-readable "by": "alice@corp (console;
// console session REF, client ADDR)".
func consoleOperator(id *policy.Identity, session string, addr netip.Addr) (recorder.Attrs, string) {
	who := id.String()
	a := recorder.Attrs{
		"operator":          who,
		"operator.verified": VerifiedConsole,
		"console.session":   session,
	}
	if id.Issuer != "" {
		a["operator.issuer"] = id.Issuer
	}
	client := "unknown"
	if addr.IsValid() {
		client = addr.String()
		a["operator.client"] = client
	}
	return a, fmt.Sprintf("%s (%s; console session %s, client %s)", who, VerifiedConsole, session, client)
}

// consoleRevokeGrant is an operator's grant revocation from the web
// console: the admin socket's POST /v1/grants/revoke (the CLI's "bastion
// grants revoke --operator") for a person signed in there, who must be
// one of the policy's operators (else refused and journaled as
// admin.refused). The grant.revoked leaf names them as the CLI's does,
// with operator.verified = console.
func (s *Server) consoleRevokeGrant(ctx context.Context, r console.GrantRevokeRequest) (grants.Grant, error) {
	attrs, by := consoleOperator(r.Who, r.Session, r.Client)
	if pol := s.Policy(); !pol.Operator(r.Who) {
		err := fmt.Errorf("%w: %s is not one of the operators the policy names (%s)", ErrNotOperator, r.Who.String(), strings.Join(pol.Operators, ", "))
		attrs["by"] = by
		s.journalRefused(ctx, "console", "grant.revoke", attrs, recorder.Attrs{"grant": r.ID}, err)
		return grants.Grant{}, &grants.GrantError{Err: grants.ErrNotApprover, Msg: err.Error()}
	}
	g, err := s.grants.Revoke(ctx, grants.GrantDecision{ID: r.ID, Comment: r.Comment, Operator: by, OperatorAttrs: attrs, ClientAddress: r.Client})
	if err == nil {
		s.log.Info("grant revoked by an operator", "grant", g.ID, "by", by)
	}
	return g, err
}
