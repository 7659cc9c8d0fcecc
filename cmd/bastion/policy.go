package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/bastionhq/bastion/bastion"
	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder/termtext"
)

func init() {
	register(&command{name: "policy check", summary: "validate a policy, with file:line:col errors and warnings", usage: policyCheckUsage, run: runPolicyCheck})
	register(&command{name: "policy explain", summary: "explain the decision on one request, role by role", usage: policyExplainUsage, run: runPolicyExplain})
	register(&command{name: "policy hash", summary: "print the hash the journal names a policy by", usage: policyHashUsage, run: runPolicyHash})
}

const policyCheckUsage = `Usage:
    bastion policy check FILE|DIR [--json]
    bastion policy check --config FILE [--json]

Validates a policy: one HCL file, or every *.hcl file of a directory (read
in name order, as one policy). With --config, validates the policy of a
"bastion serve" configuration instead: the file or directory its
policy = "…" names, or the identity and role blocks written in it, checked
against the identity providers, targets and certificate max_ttl it
configures, exactly as serve would load it. Without --config, provider and
target names are not checked (nor max_ttl against the certificates'), and
check says so.

Each finding prints as FILE:LINE:COL: error|warning: MESSAGE. Errors make
the policy unusable: serve refuses to start with it, and a running serve
refuses to reload it. Warnings point at rules that can never take effect
(shadowed roles, allow patterns a deny covers, unused identities, empty
claims, approvals nobody can give); the policy still loads.

Exit status: 0 if the policy has no errors (warnings or not), 1 if it has
errors or cannot be read, 2 for a bad command line.

Flags:
    --config FILE   check the policy of this serve configuration
    --json          print {"errors": [...], "warnings": [...], "hash":
                    "sha256:…", "roles": N, "identities": N,
                    "cross_checked": BOOL}; each finding is {"file", "line",
                    "column", "severity", "message"}. hash is empty and
                    roles and identities are 0 when there are errors.
                    Fields are only ever added.

Examples:
    $ bastion policy check /etc/bastion/policy.hcl
    $ bastion policy check /etc/bastion/policy.d
    $ bastion policy check --config /etc/bastion/bastion.hcl
    $ bastion policy check --json policy.hcl | jq -r '.errors[] | "\(.file):\(.line): \(.message)"'`

const policyExplainUsage = `Usage:
    bastion policy explain (--config FILE | --policy FILE|DIR)
                           --identity SUBJECT@PROVIDER [--claim NAME=VALUE]...
                           [--sponsor NAME] --target TARGET --login LOGIN
                           [--command CMD | --shell | --sftp | --forward HOST:PORT]
                           [--pty] [--from ADDR] [--at TIME]
                           [--grant ROLE [--grant-duration D] [--grant-command CMD]]
                           [--json]

Explains what the policy decides for one request, without a token, a
server or a journal: ALLOW or DENY, the rule that decided, the reason, the
limits an allowed session runs under, and every role of the policy in
order with whether it applied and what it said.

The request is what the front door asks: an identity (its claims, as its
token would carry them, and its sponsor) reaching TARGET as LOGIN, to run
CMD (an exec request; scp's remote end "scp -t|-f" is decided as file
transfer, as the front door does), an interactive shell, sftp, or a port
forward to HOST:PORT. With none of these it asks whether the identity may reach
the target as the login at all, as the front door does at authentication.

--grant ROLE simulates an active just-in-time grant of the grant-only role
ROLE for this identity, target and login, starting at --at and lasting
--grant-duration (default: the role's max_duration), limited to one exec
command with --grant-command. Nothing is requested or approved: the output
says the grant is simulated, and also whether the identity could request
such a grant.

Exit status: 0 if the policy allows the request, 1 if it denies it, 2 if
it could not decide (a bad command line, a policy or configuration that
cannot be read or has errors).

Flags:
    --config FILE          use the policy of this serve configuration
    --policy FILE|DIR      use this policy file or directory
    --identity ID          who asks, as SUBJECT@PROVIDER (required)
    --claim NAME=VALUE     a claim of the identity's token; repeat a name for
                           a list (--claim groups=sre --claim groups=dba); a
                           dotted name is a claim inside an object (act.sub)
    --sponsor NAME         the identity's sponsor (whom an agent acts for)
    --target TARGET        the target (required)
    --login LOGIN          the login on it (required)
    --command CMD          an exec request of this command line
    --shell                an interactive shell
    --sftp                 a file transfer (sftp, or scp)
    --forward HOST:PORT    a port forward (ssh -L, -W) to HOST:PORT
    --pty                  a PTY is attached (ssh -t)
    --from ADDR            the client's address (roles may pin addresses;
                           without it, a role that pins addresses denies)
    --at TIME              when, in RFC 3339 (default: now)
    --grant ROLE           simulate an active grant of ROLE
    --grant-duration D     the simulated grant's duration
    --grant-command CMD    the simulated grant is for this command only
    --json                 print the explanation as JSON (see below)

The JSON object has: allow, rule, reason, grant (the grant that allowed,
if any), policy_hash, request (identity, sponsor, claims, target, login,
action, command, forward, pty, from, at), limits (when allowed: role,
max_session and idle_timeout as Go durations, "0s" meaning the front
door's own limit, not_after, pty, shell, file_transfer, forward, masking),
steps (each {"rule", "outcome"}), simulated_grant (id, role, command,
start, end) and grant_request (allow, role, reason, duration, approvals,
approvers) with --grant. Fields are only ever added.

Examples:
    $ bastion policy explain --config /etc/bastion/bastion.hcl --identity alice@corp --claim groups=sre --target web-1 --login ops --shell --pty
    $ bastion policy explain --policy policy.hcl --identity agent-1@corp --target db-prod --login postgres --command "psql -c 'DROP TABLE accounts'" --grant agent-db
    $ bastion policy explain --policy policy.hcl --identity deploy@gha --claim repository=bank/web --claim ref=refs/heads/main --target web-1 --login deploy --command "systemctl restart web" --from 10.1.2.3 --json`

const policyHashUsage = `Usage:
    bastion policy hash FILE|DIR
    bastion policy hash --config FILE

Prints the hash that names a policy in the journal ("policy.loaded" events
and each session's "policy.hash"): "sha256:" and the hex SHA-256 over the
policy's files in name order, each as its base name and its bytes, both
prefixed by their length (8 bytes, big-endian). For a policy written in a
serve configuration, it is the SHA-256 of the configuration file's bytes.
The policy must be valid: a policy with errors never goes into force.

Flags:
    --config FILE   the policy of this serve configuration

Examples:
    $ bastion policy hash /etc/bastion/policy.d
    $ bastion policy hash --config /etc/bastion/bastion.hcl`

// policySource is where a policy command reads its policy: a policy file
// or directory, or a serve configuration.
type policySource struct {
	path   string // a policy file or directory
	config string // a serve configuration
}

func (s policySource) name() string {
	if s.config != "" {
		return s.config
	}
	return s.path
}

// what is what src names, for messages.
func (s policySource) what() string {
	if s.config != "" {
		return "the configuration"
	}
	return "the policy"
}

// loaded is a policy as a command reads it, with what was found in it.
type loaded struct {
	pol      *policy.Policy
	cfg      *bastion.Config // nil without --config
	errors   []policy.Diagnostic
	warnings []policy.Diagnostic
}

// load reads the policy of src. Mistakes in the policy (or the
// configuration) are returned as diagnostics; err is what kept it from
// being read at all.
func (s policySource) load() (*loaded, error) {
	l := &loaded{}
	var err error
	if s.config != "" {
		l.cfg, err = bastion.LoadConfig(s.config)
		if err == nil {
			l.pol, l.warnings = l.cfg.Policy, l.cfg.PolicyWarnings
		}
	} else {
		l.pol, l.warnings, err = policy.Load(s.path, policy.Options{})
	}
	var pe *policy.Error
	var ce *bastion.ConfigError
	switch {
	case err == nil:
	case errors.As(err, &pe):
		l.errors = pe.Diagnostics
	case errors.As(err, &ce):
		for _, d := range ce.Diags {
			diag := configDiagnostic(d)
			if diag.Severity == policy.SeverityWarning {
				l.warnings = append(l.warnings, diag)
			} else {
				l.errors = append(l.errors, diag)
			}
		}
	default:
		return nil, err
	}
	return l, nil
}

// configDiagnostic is a configuration mistake as a policy diagnostic, so
// that both print alike.
func configDiagnostic(d *hcl.Diagnostic) policy.Diagnostic {
	out := policy.Diagnostic{Severity: policy.SeverityError, Message: d.Summary}
	if d.Severity == hcl.DiagWarning {
		out.Severity = policy.SeverityWarning
	}
	if d.Detail != "" {
		out.Message += ": " + d.Detail
	}
	if at := d.Subject; at != nil {
		out.File, out.Line, out.Column = at.Filename, at.Start.Line, at.Start.Column
	}
	return out
}

// policySourceOf checks that a command was given exactly one policy: a
// path argument (pos) or --config (config).
func policySourceOf(cmd string, pos []string, config string) (policySource, error) {
	switch {
	case len(pos) > 1:
		return policySource{}, usageErrorf("%s takes one policy file or directory, not %d", cmd, len(pos))
	case len(pos) == 1 && config != "":
		return policySource{}, usageErrorf("%s takes a policy FILE|DIR or --config FILE, not both", cmd)
	case len(pos) == 0 && config == "":
		return policySource{}, usageErrorf("%s needs a policy FILE|DIR, or --config FILE for a serve configuration's policy", cmd)
	case len(pos) == 1:
		return policySource{path: pos[0]}, nil
	}
	return policySource{config: config}, nil
}

// loadError explains why a policy or configuration could not be read.
func loadError(src policySource, err error) error {
	if src.config != "" {
		return withHint(fmt.Errorf("configuration %s: %w", src.config, err), "give the serve configuration file, as serve --config takes it")
	}
	return withHint(err, "give a policy file, or a directory of *.hcl files")
}

// diagJSON is a finding in "policy check --json".
type diagJSON struct {
	File     string `json:"file"`
	Line     int    `json:"line"`
	Column   int    `json:"column"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

func diagsJSON(ds []policy.Diagnostic) []diagJSON {
	out := make([]diagJSON, 0, len(ds))
	for _, d := range ds {
		out = append(out, diagJSON{File: d.File, Line: d.Line, Column: d.Column, Severity: d.Severity, Message: d.Message})
	}
	return out
}

// checkReport is the output of "policy check --json".
type checkReport struct {
	Errors     []diagJSON `json:"errors"`
	Warnings   []diagJSON `json:"warnings"`
	Hash       string     `json:"hash"`
	Roles      int        `json:"roles"`
	Identities int        `json:"identities"`
	// CrossChecked says provider and target names and max_ttl were
	// checked against a serve configuration.
	CrossChecked bool `json:"cross_checked"`
}

func runPolicyCheck(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	config := fs.String("config", "", "serve configuration `FILE`")
	asJSON := fs.Bool("json", false, "JSON output")
	pos, err := grantsParse(fs, args)
	if err != nil {
		return err
	}
	src, err := policySourceOf("policy check", pos, *config)
	if err != nil {
		return err
	}
	l, err := src.load()
	if err != nil {
		return loadError(src, err)
	}
	if *asJSON {
		r := checkReport{Errors: diagsJSON(l.errors), Warnings: diagsJSON(l.warnings), CrossChecked: src.config != ""}
		if l.pol != nil {
			r.Hash, r.Roles, r.Identities = l.pol.Hash(), len(l.pol.Roles), len(l.pol.Identities)
		}
		if err := grantsJSON(e.stdout, r); err != nil {
			return err
		}
		if len(l.errors) > 0 {
			return exitCode(exitFailure, nil)
		}
		return nil
	}
	for _, d := range slices.Concat(l.errors, l.warnings) {
		fmt.Fprintln(e.stdout, termtext.Line(d.String()))
	}
	if len(l.errors) > 0 {
		return withHint(fmt.Errorf("%s: %s: %s cannot be loaded", src.name(), count(len(l.errors), "error"), src.what()),
			"fix the places named above; serve refuses to start with this policy, and a running serve keeps the policy in force")
	}
	fmt.Fprintf(e.stdout, "%s: ok: %s, %s, %s; hash %s\n", src.name(), count(len(l.pol.Roles), "role"),
		count(len(l.pol.Identities), "identity"), count(len(l.warnings), "warning"), l.pol.Hash())
	if src.config == "" {
		fmt.Fprintln(e.stdout, "note: identity providers, target names and max_ttl were not checked against a serve configuration: use --config FILE for that")
	}
	return nil
}

// count is "1 role", "2 roles", "0 identities".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(noun, "y"))
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func runPolicyHash(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	config := fs.String("config", "", "serve configuration `FILE`")
	pos, err := grantsParse(fs, args)
	if err != nil {
		return err
	}
	src, err := policySourceOf("policy hash", pos, *config)
	if err != nil {
		return err
	}
	l, err := src.load()
	if err != nil {
		return loadError(src, err)
	}
	if len(l.errors) > 0 {
		return withHint(fmt.Errorf("%s: %s: a policy with errors never goes into force, so it has no hash", src.name(), count(len(l.errors), "error")),
			fmt.Sprintf("run \"bastion policy check %s\" to see them", checkArgs(src)))
	}
	fmt.Fprintln(e.stdout, l.pol.Hash())
	return nil
}

// checkArgs is the argument of "policy check" for src.
func checkArgs(src policySource) string {
	if src.config != "" {
		return "--config " + src.config
	}
	return src.path
}

// explainFlags are the command line of "policy explain".
type explainFlags struct {
	config, policy                   string
	identity, sponsor, target, login string
	claims                           stringsFlag
	command, forward, from, at       string
	shell, sftp, pty, asJSON         bool
	grantRole, grantCommand          string
	grantDuration                    time.Duration
	commandSet                       bool // --command was given, even empty
}

func runPolicyExplain(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	var f explainFlags
	fs.StringVar(&f.config, "config", "", "serve configuration `FILE`")
	fs.StringVar(&f.policy, "policy", "", "policy `FILE|DIR`")
	fs.StringVar(&f.identity, "identity", "", "SUBJECT@PROVIDER")
	fs.Var(&f.claims, "claim", "NAME=VALUE")
	fs.StringVar(&f.sponsor, "sponsor", "", "sponsor")
	fs.StringVar(&f.target, "target", "", "target")
	fs.StringVar(&f.login, "login", "", "login")
	fs.StringVar(&f.command, "command", "", "exec command")
	fs.BoolVar(&f.shell, "shell", false, "interactive shell")
	fs.BoolVar(&f.sftp, "sftp", false, "file transfer")
	fs.StringVar(&f.forward, "forward", "", "HOST:PORT")
	fs.BoolVar(&f.pty, "pty", false, "with a PTY")
	fs.StringVar(&f.from, "from", "", "client address")
	fs.StringVar(&f.at, "at", "", "RFC 3339 time")
	fs.StringVar(&f.grantRole, "grant", "", "simulate a grant of ROLE")
	fs.DurationVar(&f.grantDuration, "grant-duration", 0, "simulated grant's duration")
	fs.StringVar(&f.grantCommand, "grant-command", "", "simulated grant's command")
	fs.BoolVar(&f.asJSON, "json", false, "JSON output")
	pos, err := grantsParse(fs, args)
	if err != nil {
		return err
	}
	fs.Visit(func(fl *flag.Flag) {
		if fl.Name == "command" {
			f.commandSet = true
		}
	})
	if len(pos) > 0 {
		return usageErrorf("policy explain takes no arguments: name the policy with --policy or --config")
	}
	q, err := f.request()
	if err != nil {
		return err
	}
	var src policySource
	switch {
	case f.config != "" && f.policy != "":
		return usageErrorf("policy explain takes --policy or --config, not both")
	case f.config != "":
		src.config = f.config
	case f.policy != "":
		src.path = f.policy
	default:
		return usageErrorf("policy explain needs the policy: --policy FILE|DIR, or --config FILE for a serve configuration's")
	}
	l, err := src.load()
	if err != nil {
		return exitCode(exitUsage, loadError(src, err))
	}
	if len(l.errors) > 0 {
		return exitCode(exitUsage, withHint(fmt.Errorf("%s: %s: %s cannot be loaded, so the policy decides nothing", src.name(), count(len(l.errors), "error"), src.what()),
			fmt.Sprintf("run \"bastion policy check %s\" to see them", checkArgs(src))))
	}
	x := explanation{src: src, pol: l.pol, cfg: l.cfg, req: q, warnings: len(l.warnings)}
	if l.cfg != nil {
		for _, p := range l.cfg.Providers {
			if p.Name == q.Identity.Provider {
				q.Identity.Issuer = p.Issuer
			}
		}
	}
	if f.grantRole != "" {
		if err := x.simulateGrant(f.grantRole, f.grantDuration, f.grantCommand); err != nil {
			return err
		}
	}
	x.decision, x.steps = l.pol.Explain(x.req)
	if f.asJSON {
		if err := grantsJSON(e.stdout, x.json()); err != nil {
			return err
		}
	} else {
		x.print(e.stdout)
	}
	if !x.decision.Allow {
		return exitCode(exitFailure, nil)
	}
	return nil
}

// request builds the policy question from the flags, checking them.
func (f *explainFlags) request() (policy.SessionRequest, error) {
	var q policy.SessionRequest
	at := strings.LastIndexByte(f.identity, '@')
	switch {
	case f.identity == "":
		return q, usageErrorf("policy explain needs --identity SUBJECT@PROVIDER, like agent-1@corp")
	case at <= 0 || at == len(f.identity)-1:
		return q, usageErrorf("--identity %q: want SUBJECT@PROVIDER, like agent-1@corp", f.identity)
	case f.target == "" || f.login == "":
		return q, usageErrorf("policy explain needs --target TARGET and --login LOGIN")
	}
	claims, err := claimsOf(f.claims)
	if err != nil {
		return q, err
	}
	q.Identity = &policy.Identity{Subject: f.identity[:at], Provider: f.identity[at+1:], Sponsor: f.sponsor, Claims: claims}
	q.Target, q.Login, q.PTY = f.target, f.login, f.pty

	actions := 0
	q.Action = policy.ActionConnect
	if f.commandSet {
		actions++
		q.Action, q.Command = policy.ActionExec, f.command
		if policy.IsFileTransfer(f.command) {
			// As the front door decides it: scp's remote end is a
			// file transfer.
			q.Action = policy.ActionFileTransfer
		}
	}
	if f.shell {
		actions++
		q.Action = policy.ActionShell
	}
	if f.sftp {
		actions++
		q.Action = policy.ActionFileTransfer
	}
	if f.forward != "" {
		actions++
		if host, port, err := net.SplitHostPort(f.forward); err != nil || host == "" || port == "" {
			return q, usageErrorf("--forward %q: want HOST:PORT, like localhost:5432", f.forward)
		}
		q.Action, q.Forward = policy.ActionForward, f.forward
	}
	if actions > 1 {
		return q, usageErrorf("give at most one of --command, --shell, --sftp and --forward")
	}
	if f.from != "" {
		a, err := netip.ParseAddr(f.from)
		if err != nil {
			ap, perr := netip.ParseAddrPort(f.from)
			if perr != nil {
				return q, usageErrorf("--from %q: want an IP address, like 10.1.2.3", f.from)
			}
			a = ap.Addr()
		}
		q.ClientAddress = a.Unmap()
	}
	q.Time = time.Now()
	if f.at != "" {
		t, err := time.Parse(time.RFC3339, f.at)
		if err != nil {
			return q, usageErrorf("--at %q: want an RFC 3339 time, like 2026-03-01T09:30:00Z", f.at)
		}
		q.Time = t
	}
	if f.grantRole == "" && (f.grantDuration != 0 || f.grantCommand != "") {
		return q, usageErrorf("--grant-duration and --grant-command need --grant ROLE")
	}
	if f.grantDuration < 0 {
		return q, usageErrorf("--grant-duration must be positive")
	}
	return q, nil
}

// claimsOf builds a token's claims from --claim NAME=VALUE flags: one
// value is a string, a repeated name a list, and a dotted name a claim
// inside an object.
func claimsOf(flags []string) (map[string]any, error) {
	values := map[string][]string{}
	var names []string
	for _, fl := range flags {
		name, value, ok := strings.Cut(fl, "=")
		if !ok || name == "" {
			return nil, usageErrorf("--claim %q: want NAME=VALUE, like groups=sre", fl)
		}
		if slices.Contains(strings.Split(name, "."), "") {
			return nil, usageErrorf("--claim %q: a dotted name needs a name on each side of every dot, like act.sub", fl)
		}
		if _, seen := values[name]; !seen {
			names = append(names, name)
		}
		values[name] = append(values[name], value)
	}
	claims := map[string]any{}
	for _, name := range names {
		parts := strings.Split(name, ".")
		m := claims
		for i, part := range parts[:len(parts)-1] {
			switch v := m[part].(type) {
			case nil:
				n := map[string]any{}
				m[part] = n
				m = n
			case map[string]any:
				m = v
			default:
				return nil, usageErrorf("--claim %s: %s is given a value, so it cannot hold claims too", name, strings.Join(parts[:i+1], "."))
			}
		}
		leaf := parts[len(parts)-1]
		if _, taken := m[leaf]; taken {
			return nil, usageErrorf("--claim %s: %s holds claims, so it cannot be given a value too", name, name)
		}
		vs := values[name]
		if len(vs) == 1 {
			m[leaf] = vs[0]
			continue
		}
		list := make([]any, len(vs))
		for i, v := range vs {
			list[i] = v
		}
		m[leaf] = list
	}
	return claims, nil
}

// explanation is what "policy explain" found.
type explanation struct {
	src      policySource
	pol      *policy.Policy
	cfg      *bastion.Config // nil without --config
	req      policy.SessionRequest
	warnings int

	// simulated is the simulated grant, with what the identity would be
	// told if it asked for it; nil without --grant.
	simulated *policy.Grant
	grantRule policy.GrantRule

	decision policy.Decision
	steps    []policy.Step
}

// simulatedGrantID is the ID the simulated grant goes by.
const simulatedGrantID = "simulated"

// simulateGrant adds an active grant of role to the request, as if it had
// been requested and approved at the request's time.
func (x *explanation) simulateGrant(role string, d time.Duration, command string) error {
	i := slices.IndexFunc(x.pol.Roles, func(r policy.Role) bool { return r.Name == role })
	if i < 0 {
		return exitCode(exitUsage, withHint(fmt.Errorf("--grant %s: the policy has no role %q", role, role),
			"name a role with access = \"grant\""))
	}
	r := &x.pol.Roles[i]
	if r.Access != policy.AccessGrant {
		return exitCode(exitUsage, withHint(fmt.Errorf("--grant %s: role %s is standing access, not grant-only: it needs no grant", role, role),
			"drop --grant, or name a role with access = \"grant\""))
	}
	if d == 0 {
		d = r.MaxGrantDuration()
	}
	q := &x.req
	x.simulated = &policy.Grant{
		ID: simulatedGrantID, Identity: q.Identity.String(), Role: role, Target: q.Target, Login: q.Login,
		Command: command, Start: q.Time, End: q.Time.Add(d),
	}
	q.Grants = append(q.Grants, *x.simulated)
	x.grantRule = x.pol.GrantRequest(policy.GrantAsk{Identity: q.Identity, Target: q.Target, Login: q.Login, Command: command, Duration: d, Time: q.Time})
	return nil
}

// what describes the request's action.
func (x *explanation) what() string {
	q := &x.req
	var s string
	switch q.Action {
	case policy.ActionExec:
		s = fmt.Sprintf("exec %q", q.Command)
	case policy.ActionShell:
		s = "an interactive shell"
	case policy.ActionFileTransfer:
		s = "file transfer"
	case policy.ActionForward:
		s = "a port forward to " + q.Forward
	default:
		s = "connect (may it reach the target as the login at all?)"
	}
	if q.PTY {
		s += ", with a PTY"
	}
	return s
}

func (x *explanation) print(w io.Writer) {
	p := termtext.Line
	q, d := &x.req, &x.decision
	verdict := "DENY"
	if d.Allow {
		verdict = "ALLOW"
	}
	fmt.Fprintf(w, "%s\n", verdict)
	fmt.Fprintf(w, "  request:  %s to %s@%s: %s\n", p(q.Identity.String()), p(q.Login), p(q.Target), p(x.what()))
	if len(q.Identity.Claims) > 0 || q.Identity.Sponsor != "" || q.ClientAddress.IsValid() {
		var extra []string
		if len(q.Identity.Claims) > 0 {
			b, _ := json.Marshal(q.Identity.Claims)
			extra = append(extra, "claims "+string(b))
		}
		if q.Identity.Sponsor != "" {
			extra = append(extra, "sponsor "+q.Identity.Sponsor)
		}
		if q.ClientAddress.IsValid() {
			extra = append(extra, "from "+q.ClientAddress.String())
		}
		fmt.Fprintf(w, "            %s\n", p(strings.Join(extra, "; ")))
	}
	fmt.Fprintf(w, "  at:       %s\n", q.Time.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "  rule:     %s\n", p(d.Rule))
	if d.Reason != "" {
		fmt.Fprintf(w, "  reason:   %s\n", p(d.Reason))
	}
	if d.Grant != "" {
		fmt.Fprintf(w, "  grant:    %s\n", p(d.Grant))
	}
	fmt.Fprintf(w, "  policy:   %s (%s)\n", x.pol.Hash(), p(x.src.name()))
	if g := x.simulated; g != nil {
		fmt.Fprintf(w, "\nsimulated grant %q (nothing was requested or approved):\n", g.ID)
		fmt.Fprintf(w, "  role %s, %s until %s", p(g.Role), g.Start.UTC().Format(time.RFC3339), g.End.UTC().Format(time.RFC3339))
		if g.Command != "" {
			fmt.Fprintf(w, ", for the command %q only", g.Command)
		}
		fmt.Fprintln(w)
		if r := x.grantRule; r.Allow {
			fmt.Fprintf(w, "  a request for it would go to role %s: %s approval(s) from %s, for at most %v\n",
				p(r.Role), fmt.Sprint(r.Approvals), p(strings.Join(r.Approvers, ", ")), r.Duration)
			if r.Role != g.Role {
				fmt.Fprintf(w, "  note: not to role %s, which --grant names\n", p(g.Role))
			}
		} else {
			fmt.Fprintf(w, "  the identity could not request it: %s\n", p(r.Reason))
		}
	}
	if d.Allow {
		l := &d.Limits
		fmt.Fprintln(w, "\nlimits:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  role:\t%s\n", p(l.Role))
		fmt.Fprintf(tw, "  max session:\t%s\n", roleLimit(l.MaxSession, "max_duration"))
		fmt.Fprintf(tw, "  idle timeout:\t%s\n", roleLimit(l.IdleTimeout, "idle_timeout"))
		fmt.Fprintf(tw, "  pty:\t%s\n", yesNo(l.PTY))
		fmt.Fprintf(tw, "  shell:\t%s\n", yesNo(l.Shell))
		fmt.Fprintf(tw, "  file transfer:\t%s\n", yesNo(l.FileTransfer))
		fwd := "none"
		if len(l.Forward) > 0 {
			fwd = strings.Join(l.Forward, ", ")
		}
		fmt.Fprintf(tw, "  port forwards:\t%s\n", p(fwd))
		mask := "none"
		if l.Masking != "" {
			mask = "profile " + l.Masking
		}
		fmt.Fprintf(tw, "  masking:\t%s\n", p(mask))
		end := "when the certificate expires (standing access)"
		if !l.NotAfter.IsZero() {
			end = l.NotAfter.UTC().Format(time.RFC3339) + ", when the grant does"
		}
		fmt.Fprintf(tw, "  ends:\t%s\n", end)
		tw.Flush()
	}
	fmt.Fprintln(w, "\nroles, in policy order:")
	if len(x.steps) == 0 {
		fmt.Fprintln(w, "  (the policy has no roles: everything is denied)")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range x.steps {
		fmt.Fprintf(tw, "  %s\t%s\n", p(s.Rule), p(s.Outcome))
	}
	tw.Flush()
	for _, n := range x.notes() {
		fmt.Fprintf(w, "note: %s\n", p(n))
	}
}

// notes are what the reader should know besides the decision.
func (x *explanation) notes() []string {
	var out []string
	q := &x.req
	if x.cfg != nil {
		known := q.Identity.Provider == bastion.DevProviderName
		for _, pc := range x.cfg.Providers {
			known = known || pc.Name == q.Identity.Provider
		}
		if !known {
			out = append(out, fmt.Sprintf("provider %q is not configured: no token of it is accepted", q.Identity.Provider))
		}
		if !slices.ContainsFunc(x.cfg.Targets, func(t front.Target) bool { return t.Name == q.Target }) {
			out = append(out, fmt.Sprintf("target %q is not configured: the front door refuses it before policy is asked", q.Target))
		}
	}
	if x.warnings > 0 {
		out = append(out, fmt.Sprintf("the policy has %s: run \"bastion policy check %s\"", count(x.warnings, "warning"), checkArgs(x.src)))
	}
	return out
}

func roleLimit(d time.Duration, frontName string) string {
	if d <= 0 {
		return "the front door's (ssh " + frontName + ")"
	}
	return d.String() + " (or the front door's " + frontName + ", if shorter)"
}

func yesNo(b bool) string {
	if b {
		return "allowed"
	}
	return "not allowed"
}

// explainJSON is the output of "policy explain --json".
type explainJSON struct {
	Allow          bool           `json:"allow"`
	Rule           string         `json:"rule"`
	Reason         string         `json:"reason,omitempty"`
	Grant          string         `json:"grant,omitempty"`
	PolicyHash     string         `json:"policy_hash"`
	Request        explainRequest `json:"request"`
	Limits         *explainLimits `json:"limits,omitempty"`
	Steps          []explainStep  `json:"steps"`
	SimulatedGrant *simulatedJSON `json:"simulated_grant,omitempty"`
	GrantRequest   *grantRuleJSON `json:"grant_request,omitempty"`
	Notes          []string       `json:"notes,omitempty"`
}

type explainRequest struct {
	Identity string         `json:"identity"`
	Sponsor  string         `json:"sponsor,omitempty"`
	Claims   map[string]any `json:"claims,omitempty"`
	Target   string         `json:"target"`
	Login    string         `json:"login"`
	Action   string         `json:"action"`
	Command  string         `json:"command,omitempty"`
	Forward  string         `json:"forward,omitempty"`
	PTY      bool           `json:"pty"`
	From     string         `json:"from,omitempty"`
	At       time.Time      `json:"at"`
}

type explainLimits struct {
	Role         string    `json:"role"`
	MaxSession   string    `json:"max_session"`
	IdleTimeout  string    `json:"idle_timeout"`
	NotAfter     time.Time `json:"not_after,omitzero"`
	PTY          bool      `json:"pty"`
	Shell        bool      `json:"shell"`
	FileTransfer bool      `json:"file_transfer"`
	Forward      []string  `json:"forward"`
	Masking      string    `json:"masking,omitempty"`
}

type explainStep struct {
	Rule    string `json:"rule"`
	Outcome string `json:"outcome"`
}

type simulatedJSON struct {
	ID      string    `json:"id"`
	Role    string    `json:"role"`
	Command string    `json:"command,omitempty"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
}

type grantRuleJSON struct {
	Allow     bool     `json:"allow"`
	Role      string   `json:"role,omitempty"`
	Reason    string   `json:"reason"`
	Duration  string   `json:"duration,omitempty"`
	Approvals int      `json:"approvals,omitempty"`
	Approvers []string `json:"approvers,omitempty"`
}

func (x *explanation) json() explainJSON {
	q, d := &x.req, &x.decision
	out := explainJSON{
		Allow: d.Allow, Rule: d.Rule, Reason: d.Reason, Grant: d.Grant, PolicyHash: x.pol.Hash(),
		Request: explainRequest{
			Identity: q.Identity.String(), Sponsor: q.Identity.Sponsor, Claims: q.Identity.Claims,
			Target: q.Target, Login: q.Login, Action: string(q.Action), Command: q.Command, Forward: q.Forward,
			PTY: q.PTY, At: q.Time.UTC(),
		},
		Steps: make([]explainStep, 0, len(x.steps)),
		Notes: x.notes(),
	}
	if q.ClientAddress.IsValid() {
		out.Request.From = q.ClientAddress.String()
	}
	if d.Allow {
		l := &d.Limits
		out.Limits = &explainLimits{
			Role: l.Role, MaxSession: l.MaxSession.String(), IdleTimeout: l.IdleTimeout.String(), NotAfter: l.NotAfter.UTC(),
			PTY: l.PTY, Shell: l.Shell, FileTransfer: l.FileTransfer, Forward: l.Forward, Masking: l.Masking,
		}
		if out.Limits.Forward == nil {
			out.Limits.Forward = []string{}
		}
	}
	for _, s := range x.steps {
		out.Steps = append(out.Steps, explainStep{Rule: s.Rule, Outcome: s.Outcome})
	}
	if g := x.simulated; g != nil {
		out.SimulatedGrant = &simulatedJSON{ID: g.ID, Role: g.Role, Command: g.Command, Start: g.Start.UTC(), End: g.End.UTC()}
		r := x.grantRule
		out.GrantRequest = &grantRuleJSON{Allow: r.Allow, Role: r.Role, Reason: r.Reason, Approvals: r.Approvals, Approvers: r.Approvers}
		if r.Duration > 0 {
			out.GrantRequest.Duration = r.Duration.String()
		}
	}
	return out
}
