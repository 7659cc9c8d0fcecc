package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bastionhq/bastion/bastion"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/apiclient"
	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/termtext"
)

func init() {
	register(&command{name: "grants request", summary: "ask for just-in-time access to a target", usage: grantsRequestUsage, run: runGrantsRequest})
	register(&command{name: "grants approve", summary: "approve a pending grant request", usage: grantsApproveUsage, run: grantsDecide("approve")})
	register(&command{name: "grants deny", summary: "deny a pending grant request", usage: grantsDenyUsage, run: grantsDecide("deny")})
	register(&command{name: "grants revoke", summary: "end a grant early, or withdraw a request", usage: grantsRevokeUsage, run: grantsDecide("revoke")})
	register(&command{name: "grants list", summary: "list your grants and those you may approve", usage: grantsListUsage, run: runGrantsList})
	register(&command{name: "grants show", summary: "show one grant", usage: grantsShowUsage, run: runGrantsShow})
}

// grantsAPIFlags is the part of every grants usage text that describes
// the flags shared with "bastion login".
const grantsAPIFlags = `    --server URL              the bastion's API, https://HOST[:PORT]
                              (default: the client profile's)
    --token-file FILE         read your token from FILE
    --token-env VAR           read your token from the environment variable VAR
    --issuer NAME             the identity provider for the device flow
    --ca-fingerprint SHA256:X pin the API's TLS certificate
    --profile FILE            the client profile (default: $BASTION_PROFILE,
                              else ~/.config/bastion/profile.json)`

const grantsAuthText = `You are who your OpenID Connect token says, exactly as for "bastion
login": --token-file, --token-env, or else the device flow; --server and
--ca-fingerprint as there. Once "bastion login" has run, none of these
is needed: the server, its pin and where your token comes from are taken
from the client profile login wrote. A flag given wins over the profile
(a token flag replaces the profile's token source; a --server other than
the profile's ignores the profile).`

const grantsRequestUsage = `Usage:
    bastion grants request --target TARGET --login LOGIN --duration DURATION
                           --reason TEXT [--ticket REF] [--command CMD]
                           [--wait] [--json] [connection flags]

Asks for just-in-time access to TARGET as LOGIN for DURATION, under a
grant-only role of the bastion's policy. The request is pending until the
approvers the role names approve it (never you), and expires if nobody
decides within the bastion's pending time (an hour by default). Once
approved, it is active for DURATION, or the role's maximum if shorter;
certificates issued under it ("bastion login") expire with it, and live
sessions under it end when it does.

` + grantsAuthText + `

Prints the grant's ID, which approvers pass to "bastion grants approve".
With --wait, waits until the request is decided: exit status 0 once it is
active, 1 if it was denied or expired.

Flags:
` + grantsAPIFlags + `
    --target TARGET           the target to reach (required)
    --login LOGIN             the login on it (required)
    --duration DURATION       how long, like 30m or 2h (required)
    --reason TEXT             what the access is for (required; journaled
                              and shown to approvers)
    --ticket REF              the ticket or change you work on
    --command CMD             limit the grant to this one exec command
    --wait                    wait for the decision
    --json                    print the grant as JSON (see "grants show")

Examples:
    $ bastion grants request --target db-prod --login postgres --duration 30m --reason "rotate the replication password" --ticket CHG-1234
    $ bastion grants request --token-file /var/run/secrets/tokens/bastion --target web-1 --login deploy --duration 15m --reason "hotfix rollout" --command "systemctl restart app" --wait`

const grantsApproveUsage = `Usage:
    bastion grants approve ID [--comment TEXT] [--json] [connection flags]

Approves the pending grant request ID (or a unique start of it, as
"grants show" takes). The policy in force decides who may approve a
grant of its role; nobody approves their own request, and each approver
counts once. The approval that completes the count the role asks
for makes the grant active from that moment.

` + grantsAuthText + `

Flags:
` + grantsAPIFlags + `
    --comment TEXT            why you approve (journaled)
    --json                    print the grant after the approval as JSON

Examples:
    $ bastion grants list --state pending
    $ bastion grants approve G-1234 --comment "matches CHG-1234"`

const grantsDenyUsage = `Usage:
    bastion grants deny ID --comment TEXT [--json] [connection flags]

Denies the pending grant request ID (or a unique start of it). Anyone
who may approve it may deny it; the comment tells the requester why.

` + grantsAuthText + `

Flags:
` + grantsAPIFlags + `
    --comment TEXT            why you deny it (required; journaled)
    --json                    print the grant after the denial as JSON

Examples:
    $ bastion grants deny G-1234 --comment "use the read-only replica"`

const grantsRevokeUsage = `Usage:
    bastion grants revoke ID [--comment TEXT] [--json] [connection flags]
    bastion grants revoke ID --operator [--home DIR] [--token-file FILE]
                             [--comment TEXT] [--json]

Ends the active grant ID (or a unique start of it; the whole ID with
--operator) before its time, or withdraws a pending request: its
requester may, and so may anyone who may approve it. Live sessions
under an active grant end at once, with a message saying so.

With --operator, an operator of the bastion host revokes any grant through
the admin socket of the "bastion serve" running for the home, with no
token needed: the journal records who revoked it, the uid, account and pid
the kernel reports for the caller, and the person: the identity of the OIDC
token given with --token-file (or $BASTION_TOKEN_FILE), which the server
verifies, else the identity the configuration's operator_accounts maps the
account to, else nobody ("operator.verified" none). When the policy names
operators, a person who is not one is refused ("not an operator").

` + grantsAuthText + `

Flags:
` + grantsAPIFlags + `
    --comment TEXT            why (journaled)
    --operator                revoke as an operator, through the admin socket
    --json                    print the grant after the revocation as JSON

Examples:
    $ bastion grants revoke G-1234
    $ bastion grants revoke G-1234 --comment "work done early"
    $ sudo bastion --home /var/lib/bastion grants revoke G-1234 --operator --comment "incident 77"`

const grantsListUsage = `Usage:
    bastion grants list [--state STATE] [--json] [connection flags]

Lists your own grants and those you may approve, oldest first: ID, state,
requester, LOGIN@TARGET, duration, and when the grant or the request
ends. STATE is one of pending, active, denied, expired, ended, revoked.

` + grantsAuthText + `

Flags:
` + grantsAPIFlags + `
    --state STATE             only grants in this state
    --json                    print {"grants": [...]}, each grant as
                              "grants show --json" prints it

Examples:
    $ bastion grants list
    $ bastion grants list --state pending --json`

const grantsShowUsage = `Usage:
    bastion grants show ID [--json] [connection flags]

Shows grant ID: who asked for what and why, its role, who approved it,
and when it started and ends, or how it ended. A grant that is not yours
and that you may not approve is shown as unknown.

ID is the whole ID ("G-1042"; "g-1042" and "1042" too) or its start, if
no other grant you see has an ID starting so ("G-104" for G-1042 when
you see no G-104, G-1040, G-1041, ...). A whole ID always means that
grant. A start that several IDs share fails (exit 1) and lists them.

` + grantsAuthText + `

Flags:
` + grantsAPIFlags + `
    --json                    print the grant as JSON

The JSON object has: id, state (pending, active, denied, expired, ended,
revoked), identity, provider, issuer, subject, sponsor, target, login,
command, reason, ticket, role, asked_duration, duration (Go durations like
"30m0s"), approvals_needed, approvers, approvals (each with by, comment,
at), requested_at, pending_until, start, end, closed_at, closed_by,
comment, policy_hash and client_address; times in RFC 3339. Fields are
only ever added.

Examples:
    $ bastion grants show G-1234
    $ bastion grants show 1234 --json
    $ bastion grants show G-1234 --server https://bastion.example:8443 --ca-fingerprint SHA256:3q2+7wXbOJu1fXmGnXh1cXk2sBvQbPeY7ddQvP0hZ7s --token-file agent.token`

// grantsSession is what every grants command needs: the API client and
// the caller's token.
type grantsSession struct {
	e     *env
	api   *apiclient.Client
	token string
}

func grantsConnect(ctx context.Context, e *env, a *apiFlags, cmd string) (*grantsSession, error) {
	if err := a.resolve(e, cmd); err != nil {
		return nil, err
	}
	api, err := a.client()
	if err != nil {
		return nil, err
	}
	src, err := a.tokenSource(ctx, e, api)
	if err != nil {
		return nil, err
	}
	tok, err := src(ctx)
	if err != nil {
		return nil, err
	}
	return &grantsSession{e: e, api: api, token: tok}, nil
}

// grantID returns the ID of the grant arg names among those the caller
// sees (their own, and those they may approve): arg is a whole ID, in any
// case, with or without its "G-", or the start of the ID of only one of
// them. A whole ID wins over longer IDs it starts. An arg that starts
// several IDs is a failed look-up (exit 1) that lists them; one that
// starts none is passed on as it is, and the server answers
// grant_not_found (exit 1). If the list cannot be had, arg is passed on
// too.
func (s *grantsSession) grantID(ctx context.Context, arg string) (string, error) {
	want := grantsNormalID(arg)
	gs, err := s.api.Grants(ctx, s.token, "")
	if err != nil {
		// The action itself, with the ID as given, then fails the same
		// way, and the server journals its refusal as that action's.
		return want, nil
	}
	var ids []string
	for _, g := range gs {
		if !slices.Contains(ids, g.ID) {
			ids = append(ids, g.ID)
		}
	}
	id, candidates := grantsMatchID(ids, want)
	if len(candidates) > 1 {
		const most = 10
		list := strings.Join(candidates[:min(len(candidates), most)], ", ")
		if len(candidates) > most {
			list += ", …"
		}
		return "", exitCode(exitFailure, withHint(fmt.Errorf("%d of the grants you see have IDs starting with %q: %s", len(candidates), arg, termtext.Line(list)),
			"give more of the ID"))
	}
	if id == "" {
		return want, nil
	}
	return id, nil
}

// grantsNormalID writes a grant ID as the bastion does: "G-1042" for
// "g-1042" or "1042". Anything else is returned as it is.
func grantsNormalID(arg string) string {
	t := strings.TrimSpace(arg)
	switch {
	case t != "" && strings.Trim(t, "0123456789") == "":
		return "G-" + t
	case len(t) >= 2 && strings.EqualFold(t[:2], "G-"):
		return "G-" + t[2:]
	}
	return t
}

// grantsMatchID returns the one of ids that is want, or else that starts
// with want; with none or several, it returns "" and those that start
// with want.
func grantsMatchID(ids []string, want string) (id string, candidates []string) {
	if slices.Contains(ids, want) {
		return want, nil
	}
	for _, id := range ids {
		if strings.HasPrefix(id, want) {
			candidates = append(candidates, id)
		}
	}
	if len(candidates) == 1 {
		return candidates[0], nil
	}
	return "", candidates
}

// grantsParse parses flags that may come before or after the one
// argument some commands take (ID), and returns the arguments.
func grantsParse(fs *flagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func runGrantsRequest(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	var a apiFlags
	a.register(fs)
	var req certauth.GrantRequest
	var d time.Duration
	var wait, asJSON bool
	fs.StringVar(&req.Target, "target", "", "target")
	fs.StringVar(&req.Login, "login", "", "login")
	fs.DurationVar(&d, "duration", 0, "duration")
	fs.StringVar(&req.Reason, "reason", "", "reason")
	fs.StringVar(&req.Ticket, "ticket", "", "ticket")
	fs.StringVar(&req.Command, "command", "", "command")
	fs.BoolVar(&wait, "wait", false, "wait for the decision")
	fs.BoolVar(&asJSON, "json", false, "JSON output")
	pos, err := grantsParse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageErrorf("grants request takes no arguments: give the target with --target")
	case req.Target == "" || req.Login == "":
		return usageErrorf("grants request needs --target TARGET and --login LOGIN")
	case d <= 0:
		return usageErrorf("grants request needs --duration, a positive duration like 30m")
	case strings.TrimSpace(req.Reason) == "":
		return usageErrorf("grants request needs --reason: say what the access is for")
	}
	req.Duration = d.String()
	s, err := grantsConnect(ctx, e, &a, "grants request")
	if err != nil {
		return err
	}
	g, err := s.api.RequestGrant(ctx, s.token, req)
	if err != nil {
		return grantsExplain(err)
	}
	if !wait {
		return s.print(g, asJSON, "requested")
	}
	fmt.Fprintf(e.stderr, "bastion: requested grant %s; waiting for %d approval(s) until %s\n",
		termtext.Line(g.ID), g.ApprovalsNeeded, g.PendingUntil.UTC().Format(time.RFC3339))
	if g, err = s.wait(ctx, g); err != nil {
		return err
	}
	if err := s.print(g, asJSON, ""); err != nil {
		return err
	}
	if g.State != grants.GrantActive {
		return exitCode(exitFailure, nil)
	}
	return nil
}

// wait polls grant g until it is no longer pending.
func (s *grantsSession) wait(ctx context.Context, g *grants.Grant) (*grants.Grant, error) {
	for g.State == grants.GrantPending {
		if !loginSleep(ctx, 2*time.Second) {
			return nil, ctx.Err()
		}
		next, err := s.api.Grant(ctx, s.token, g.ID)
		if err != nil {
			return nil, grantsExplain(err)
		}
		g = next
	}
	return g, nil
}

func grantsDecide(action string) func(context.Context, *env, []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		fs := e.flags()
		var a apiFlags
		a.register(fs)
		var comment string
		var asJSON, asOperator bool
		fs.StringVar(&comment, "comment", "", "comment")
		fs.BoolVar(&asJSON, "json", false, "JSON output")
		if action == "revoke" {
			fs.BoolVar(&asOperator, "operator", false, "revoke as an operator, through the admin socket")
		}
		pos, err := grantsParse(fs, args)
		if err != nil {
			return err
		}
		switch {
		case len(pos) != 1:
			return usageErrorf("grants %s takes one grant ID, like G-1234", action)
		case action == "deny" && strings.TrimSpace(comment) == "":
			return usageErrorf("grants deny needs --comment: tell the requester why")
		}
		if asOperator {
			return grantsRevokeAsOperator(ctx, e, grantsNormalID(pos[0]), comment, asJSON, &a)
		}
		s, err := grantsConnect(ctx, e, &a, "grants "+action)
		if err != nil {
			return err
		}
		id, err := s.grantID(ctx, pos[0])
		if err != nil {
			return err
		}
		g, err := s.api.DecideGrant(ctx, s.token, id, action, comment)
		if err != nil {
			return grantsExplain(err)
		}
		done := map[string]string{"approve": "approved", "deny": "denied", "revoke": "revoked"}[action]
		return s.print(g, asJSON, done)
	}
}

// grantsRevokeAsOperator revokes a grant through the admin socket of the
// server running for the home: the caller's uid, account and pid
// journaled as who revoked it, and the person its token (if any) or its
// account names.
func grantsRevokeAsOperator(ctx context.Context, e *env, id, comment string, asJSON bool, a *apiFlags) error {
	home, err := e.home()
	if err != nil {
		return err
	}
	if a.tokenFile != "" && a.tokenEnv != "" {
		return usageErrorf("give --token-file or --token-env, not both")
	}
	e.tokenFile = a.tokenFile
	token, err := e.readerToken()
	if a.tokenEnv != "" {
		token, err = loginCleanToken(e.getenv(a.tokenEnv), "$"+a.tokenEnv)
	}
	if err != nil {
		return err
	}
	g, err := bastion.AdminRevokeGrant(ctx, home, bastion.AdminGrantRevokeRequest{ID: id, Comment: comment, By: operator(e), Token: token})
	switch {
	case errors.Is(err, bastion.ErrNoServer):
		return withHint(err, `--operator talks to the "bastion serve" running for this home (--home); without one, revoke through the API as an approver`)
	case err != nil:
		return err
	}
	return (&grantsSession{e: e}).print(&g, asJSON, "revoked")
}

func runGrantsList(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	var a apiFlags
	a.register(fs)
	var state string
	var asJSON bool
	fs.StringVar(&state, "state", "", "state")
	fs.BoolVar(&asJSON, "json", false, "JSON output")
	pos, err := grantsParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("grants list takes no arguments")
	}
	if state != "" && !grantsKnownState(state) {
		return usageErrorf("--state %q: want one of pending, active, denied, expired, ended, revoked", state)
	}
	s, err := grantsConnect(ctx, e, &a, "grants list")
	if err != nil {
		return err
	}
	gs, err := s.api.Grants(ctx, s.token, grants.GrantState(state))
	if err != nil {
		return grantsExplain(err)
	}
	if asJSON {
		if gs == nil {
			gs = []grants.Grant{}
		}
		return grantsJSON(e.stdout, certauth.GrantList{Grants: gs})
	}
	if len(gs) == 0 {
		fmt.Fprintln(e.stdout, "no grants")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tIDENTITY\tACCESS\tDURATION\tUNTIL\tREASON")
	for _, g := range gs {
		until := ""
		switch {
		case g.State == grants.GrantPending:
			until = g.PendingUntil.UTC().Format(time.RFC3339)
		case g.State == grants.GrantActive:
			until = g.End.UTC().Format(time.RFC3339)
		case !g.ClosedAt.IsZero():
			until = g.ClosedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", termtext.Line(g.ID), termtext.Line(string(g.State)), termtext.Line(g.Identity),
			termtext.Line(g.Login+"@"+g.Target), time.Duration(g.Duration), until, termtext.Line(grantsShort(g.Reason, 50)))
	}
	return tw.Flush()
}

func runGrantsShow(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	var a apiFlags
	a.register(fs)
	var asJSON bool
	fs.BoolVar(&asJSON, "json", false, "JSON output")
	pos, err := grantsParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("grants show takes one grant ID, like G-1234")
	}
	s, err := grantsConnect(ctx, e, &a, "grants show")
	if err != nil {
		return err
	}
	id, err := s.grantID(ctx, pos[0])
	if err != nil {
		return err
	}
	g, err := s.api.Grant(ctx, s.token, id)
	if err != nil {
		return grantsExplain(err)
	}
	return s.print(g, asJSON, "")
}

// print writes g as JSON, or as a summary headed "grant ID VERB" (or
// "grant ID" when verb is "").
func (s *grantsSession) print(g *grants.Grant, asJSON bool, verb string) error {
	if asJSON {
		return grantsJSON(s.e.stdout, g)
	}
	w := s.e.stdout
	p := termtext.Line
	head := "grant " + p(g.ID)
	if verb != "" {
		head += " " + verb
	}
	fmt.Fprintf(w, "%s: %s\n", head, p(string(g.State)))
	fmt.Fprintf(w, "  identity:   %s\n", p(g.Identity))
	fmt.Fprintf(w, "  access:     %s@%s", p(g.Login), p(g.Target))
	if g.Command != "" {
		fmt.Fprintf(w, ", command %q", g.Command)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  role:       %s\n", p(g.Role))
	fmt.Fprintf(w, "  duration:   %s", time.Duration(g.Duration))
	if g.AskedDuration != g.Duration {
		fmt.Fprintf(w, " (asked for %s; the role's maximum)", time.Duration(g.AskedDuration))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  reason:     %s\n", p(g.Reason))
	if g.Ticket != "" {
		fmt.Fprintf(w, "  ticket:     %s\n", p(g.Ticket))
	}
	fmt.Fprintf(w, "  requested:  %s\n", g.RequestedAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "  approvals:  %d of %d", len(g.Approvals), g.ApprovalsNeeded)
	if len(g.Approvers) > 0 {
		fmt.Fprintf(w, " (approvers: %s)", p(strings.Join(g.Approvers, ", ")))
	}
	fmt.Fprintln(w)
	for _, ap := range g.Approvals {
		fmt.Fprintf(w, "    %s by %s", ap.At.UTC().Format(time.RFC3339), p(ap.By))
		if ap.Comment != "" {
			fmt.Fprintf(w, ": %s", p(ap.Comment))
		}
		fmt.Fprintln(w)
	}
	switch g.State {
	case grants.GrantPending:
		fmt.Fprintf(w, "  expires:    %s unless decided\n", g.PendingUntil.UTC().Format(time.RFC3339))
	case grants.GrantActive:
		fmt.Fprintf(w, "  active:     %s until %s\n", g.Start.UTC().Format(time.RFC3339), g.End.UTC().Format(time.RFC3339))
	default:
		if !g.Start.IsZero() {
			fmt.Fprintf(w, "  was active: %s until %s\n", g.Start.UTC().Format(time.RFC3339), g.End.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(w, "  %-11s %s", p(string(g.State))+":", g.ClosedAt.UTC().Format(time.RFC3339))
		if g.ClosedBy != "" {
			fmt.Fprintf(w, " by %s", p(g.ClosedBy))
		}
		if g.Comment != "" {
			fmt.Fprintf(w, ": %s", p(g.Comment))
		}
		fmt.Fprintln(w)
	}
	return nil
}

func grantsJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func grantsKnownState(s string) bool {
	for _, st := range grants.GrantStates {
		if string(st) == s {
			return true
		}
	}
	return false
}

// grantsShort cuts s to n runes for a table cell.
func grantsShort(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// grantsExplain adds what to do next to the refusals of grant actions.
func grantsExplain(err error) error {
	var ae *apiclient.APIError
	if !errors.As(err, &ae) {
		return loginExplain(err)
	}
	switch ae.Reason {
	case events.ReasonDenied:
		return withHint(err, "no grant-only role of the policy covers this target and login for you; ask the bastion's operators which roles you may request")
	case events.ReasonOwnGrant:
		return withHint(err, "another approver the policy names must decide it")
	case events.ReasonNotApprover:
		return withHint(err, "the policy in force names who may approve grants of this role")
	case events.ReasonSponsorConflict:
		return withHint(err, "the role's approval excludes the requester's sponsor and those acting for the same person: another approver the policy names must approve")
	case events.ReasonGrantNotFound:
		return withHint(err, `check the ID with "bastion grants list": you see your own grants and those you may approve`)
	case events.ReasonGrantState:
		return withHint(err, `see where it stands with "bastion grants show ID"`)
	case events.ReasonAlreadyApproved:
		return withHint(err, "it waits for another approver")
	case events.ReasonGrantsNotEnabled:
		return withHint(err, "this bastion does not offer just-in-time grants; ask its operators")
	case events.ReasonRequestMalformed:
		return withHint(err, `run "bastion help grants request" for what a request needs`)
	}
	return loginExplain(err)
}
