package bastion

import (
	"context"
	"fmt"
	"strings"

	"github.com/bastionhq/bastion/bastion/console"
	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/recorder"
)

// consoleKill is a kill asked from the web console: the admin socket's
// POST /v1/sessions/kill (the CLI's "bastion sessions kill") for a person
// signed in there. The person is one of the policy's operators, or the
// kill is refused and the refusal journaled (admin.refused), as the admin
// socket refuses one. The end leaf names them as the CLI's does, with
// operator.verified = console in place of the socket peer's account.
func (s *Server) consoleKill(ctx context.Context, k console.KillRequest) (front.LiveSession, error) {
	attrs, by := consoleOperator(k)
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
func consoleOperator(k console.KillRequest) (recorder.Attrs, string) {
	who := k.Who.String()
	a := recorder.Attrs{
		"operator":          who,
		"operator.verified": VerifiedConsole,
		"console.session":   k.Session,
	}
	if k.Who.Issuer != "" {
		a["operator.issuer"] = k.Who.Issuer
	}
	client := "unknown"
	if k.Client.IsValid() {
		client = k.Client.String()
		a["operator.client"] = client
	}
	return a, fmt.Sprintf("%s (%s; console session %s, client %s)", who, VerifiedConsole, k.Session, client)
}
