package front

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion/local"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// currentPolicy is the policy in force: reloads swap it.
func (f *Front) currentPolicy() *policy.Policy {
	if f.opts.Policy == nil {
		return nil
	}
	return f.opts.Policy()
}

// request is the policy question of info's connection asking action.
func (f *Front) request(info *authInfo, login, target string, action policy.Action) policy.SessionRequest {
	now := f.now()
	req := policy.SessionRequest{Identity: info.who, Target: target, Login: login, Time: now, Action: action}
	if ap, err := netip.ParseAddrPort(info.client); err == nil {
		req.ClientAddress = ap.Addr().Unmap()
	}
	if f.opts.Grants != nil && info.who != nil {
		req.Grants = f.opts.Grants(info.who.String(), now)
	}
	return req
}

// decide asks the policy in force; with none, everything is denied.
func (f *Front) decide(req policy.SessionRequest) (policy.Decision, string) {
	p := f.currentPolicy()
	if p == nil || req.Identity == nil {
		f.metrics.Decided(string(req.Action), false)
		return policy.Decision{Rule: "default", Reason: "no policy is in force"}, ""
	}
	d := p.Session(req)
	f.metrics.Decided(string(req.Action), d.Allow)
	return d, p.Hash()
}

// mayReach is the authentication-time question: may the connection's
// identity reach target as login at all?
func (f *Front) mayReach(info *authInfo, login, target string) (policy.Decision, bool) {
	d, _ := f.decide(f.request(info, login, target, policy.ActionConnect))
	return d, d.Allow
}

// mayReachAny reports whether the identity may reach target as any of
// the certificate's principals (ssh -J's channel, before the inner login
// is known).
func (f *Front) mayReachAny(info *authInfo, target string) bool {
	for _, l := range info.cert.ValidPrincipals {
		if _, ok := f.mayReach(info, l, target); ok {
			return true
		}
	}
	return false
}

// authorize asks policy whether the session may run a shell, an exec
// command or a file transfer. If it may, the decision is kept for the
// session's start leaf and its limits applied; if not, the client is told
// why on its stderr, the refusal is journaled, and the session ends with
// exit status 1. The request was accepted only to say why: OpenSSH exits
// at once on a refused exec or subsystem.
func (s *frontSession) authorize(req *ssh.Request, action policy.Action, command string) bool {
	info := s.info
	q := s.f.request(info, info.login, info.target.Name, action)
	q.Command = command
	q.PTY = s.pty != nil
	d, hash := s.f.decide(q)
	if d.Allow {
		d = s.setUpMasking(d, action)
	}
	if d.Allow {
		s.decision, s.policyHash = d, hash
		if s.life != nil {
			s.life.apply(d)
		}
		return true
	}
	req.Reply(true, nil)
	attrs := info.addTo(recorder.Attrs{
		"reason": events.ReasonPolicyDenied, "request": req.Type, "action": string(action),
		"user": info.login + "@" + info.target.Name, "target": info.target.Name, "login": info.login,
		"policy.rule": d.Rule, "detail": d.Reason,
	})
	if hash != "" {
		attrs["policy.hash"] = hash
	}
	if command != "" {
		attrs["command"] = command
	}
	// Refused, the request belongs to no session: the policy's
	// text_masking applies.
	s.f.textMasker().Fields(attrs, "command", "detail")
	s.f.log.Info("ssh request denied by policy", "identity", info.identity, "target", info.target.Name, "login", info.login, "action", action, "rule", d.Rule, "client", info.client)
	s.f.journal(events.RequestRefused, attrs, "a refused ssh request")
	s.say("%s", deniedMessage(action, command, d))
	s.exit(local.Result{ExitCode: 1})
	return false
}

// deniedMessage is what the client reads when policy denies a request.
func deniedMessage(action policy.Action, command string, d policy.Decision) string {
	what := map[policy.Action]string{
		policy.ActionShell: "an interactive shell", policy.ActionFileTransfer: "file transfer",
		policy.ActionExec: fmt.Sprintf("the command %q", command),
	}[action]
	if what == "" {
		what = string(action)
	}
	msg := "policy denies " + what
	if d.Reason != "" {
		msg += ": " + d.Reason
	}
	return msg + " (rule " + d.Rule + ")"
}

// policyAttrs adds to a session's start leaf the decision that let it
// run: the rule, the grant if any, and the hash of the policy in force.
func (s *frontSession) policyAttrs(attrs recorder.Attrs) {
	d := s.decision
	if d.Rule == "" {
		return
	}
	attrs["policy.rule"] = d.Rule
	attrs["policy.hash"] = s.policyHash
	if d.Grant != "" {
		attrs["policy.grant"] = d.Grant
		attrs["policy.grant.end"] = d.Limits.NotAfter.UTC().Format(time.RFC3339)
	}
	if d.Limits.Masking != "" {
		attrs["policy.masking"] = d.Limits.Masking
	}
}

// setUpMasking prepares what the decision's role asks of the output: its
// masking profile, and redacting what is typed at password prompts. It
// fails closed: a profile that cannot be applied denies the request, and
// so does a file transfer under a masking profile (the files would pass
// unmasked, and masking would corrupt them).
func (s *frontSession) setUpMasking(d policy.Decision, action policy.Action) policy.Decision {
	if name := d.Limits.Masking; name != "" {
		if action == policy.ActionFileTransfer {
			d.Allow = false
			d.Reason = fmt.Sprintf("the role masks output (profile %q), and files cannot be transferred masked", name)
			return d
		}
		m, err := s.f.maskers.get(s.f.currentPolicy(), name)
		if err != nil {
			d.Allow = false
			d.Reason = fmt.Sprintf("the role's masking cannot be applied: %v", err)
			return d
		}
		s.masker = m
	}
	if d.Limits.RedactPasswordInput && s.pty != nil {
		s.prompt = &promptWatch{}
	}
	return d
}
