package bastion

import (
	"context"
	"fmt"
	"net/netip"

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
	attrs, by, err := s.consoleOperator(ctx, "kill", recorder.Attrs{"session": k.ID}, k.Who, k.Session, k.Client)
	if err != nil {
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
// console session REF, client ADDR)". It is the console's twin of
// [Server.operator]: a person who is not one of the policy's operators
// is refused (an error wrapping ErrNotOperator) and the refusal journaled
// (admin.refused) for action, naming what in subject.
func (s *Server) consoleOperator(ctx context.Context, action string, subject recorder.Attrs, id *policy.Identity, session string, addr netip.Addr) (recorder.Attrs, string, error) {
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
	by := fmt.Sprintf("%s (%s; console session %s, client %s)", who, VerifiedConsole, session, client)
	if pol := s.Policy(); !pol.Operator(id) {
		err := notOperator(who, pol)
		a["by"] = by
		s.journalRefused(ctx, "console", action, a, subject, err)
		return nil, "", err
	}
	return a, by, nil
}

// consoleRevokeGrant is an operator's grant revocation from the web
// console: the admin socket's POST /v1/grants/revoke (the CLI's "bastion
// grants revoke --operator") for a person signed in there, who must be
// one of the policy's operators (else refused and journaled as
// admin.refused). The grant.revoked leaf names them as the CLI's does,
// with operator.verified = console.
func (s *Server) consoleRevokeGrant(ctx context.Context, r console.GrantRevokeRequest) (grants.Grant, error) {
	attrs, by, err := s.consoleOperator(ctx, "grant.revoke", recorder.Attrs{"grant": r.ID}, r.Who, r.Session, r.Client)
	if err != nil {
		return grants.Grant{}, &grants.GrantError{Err: grants.ErrNotApprover, Msg: err.Error()}
	}
	g, err := s.grants.Revoke(ctx, grants.GrantDecision{ID: r.ID, Comment: r.Comment, Operator: by, OperatorAttrs: attrs, ClientAddress: r.Client})
	if err == nil {
		s.log.Info("grant revoked by an operator", "grant", g.ID, "by", by)
	}
	return g, err
}
