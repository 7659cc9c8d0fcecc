package bastion

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/bastionhq/bastion/bastion/tick"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/policy/mask"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// Journal events of policy loads: every policy put in force, with its
// hash, and every reload refused for mistakes, with its errors (the old
// policy, and the whole configuration in force, stay).
const (
	EventPolicyLoaded  = events.PolicyLoaded
	EventPolicyRefused = events.PolicyRefused
)

// Reload triggers, as journaled.
const (
	ReloadStart   = "start"
	ReloadSignal  = "signal"
	ReloadChanged = "file-changed"
)

// policyWatchInterval is how often the policy's files are looked at for
// changes.
const policyWatchInterval = time.Second

// Policy is the policy in force.
func (s *Server) Policy() *policy.Policy { return s.policy.Load() }

// maxPolicyAttr is the longest value a leaf's attribute holds (the
// journal format, section 5).
const maxPolicyAttr = 1 << 20

// policyTextMasker masks the policy's text and roles before the journal
// keeps them: with the built-in "secrets" detectors, whatever the
// policy's text_masking says. A policy holds no cardholder data, while
// its subjects and claims are often long numbers that the card detector
// would hide from its reviewers; a token or password in a comment or a
// command pattern is what may slip in.
var policyTextMasker = sync.OnceValue(func() *mask.Masker {
	prof, _ := mask.BuiltinProfile("secrets")
	m, err := mask.Compile(prof)
	if err != nil {
		panic("bastion: the built-in secrets profile does not compile: " + err.Error())
	}
	return m
})

// PolicyRecord is what policy.loaded keeps of p for review: "text", the
// policy as loaded, "roles.json", its roles as [policy.RoleView]s, and,
// when the policy names them, "operators.json" and "auditors.json", the
// identity matchers of its operators and auditors as
// [policy.MatcherView]s, all masked for secrets (said in "masked"). A text longer than an
// attribute holds is cut there, and "text.truncated" gives its length in
// bytes; the roles, which say what the policy allows, are always kept
// whole, so a policy whose roles do not fit cannot be journaled, and is
// refused.
func PolicyRecord(p *policy.Policy) (recorder.Attrs, error) {
	m := policyTextMasker()
	roles, hits := p.RolesJSON(m)
	if len(roles) > maxPolicyAttr {
		return nil, fmt.Errorf("the policy's %d roles take %d bytes as JSON, more than the %d the journal keeps of a policy in force, so it cannot be put in force: use fewer roles, or name identities once and refer to them", len(p.Roles), len(roles), maxPolicyAttr)
	}
	text, textHits := m.Text(p.Text())
	a := recorder.Attrs{"roles.json": string(roles)}
	if len(text) > maxPolicyAttr {
		a["text.truncated"] = strconv.Itoa(len(text))
		cut := maxPolicyAttr
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut]
	}
	a["text"] = text
	sums := []string{strings.Join(mask.Summary("roles.json", hits), ","), strings.Join(mask.Summary("text", textHits), ",")}
	// Who operates and who audits the bastion, when the policy says.
	ops, auds, opsHits, audHits := p.StaffJSON(m)
	if ops != nil {
		a["operators.json"] = string(ops)
		sums = append(sums, strings.Join(mask.Summary("operators.json", opsHits), ","))
	}
	if auds != nil {
		a["auditors.json"] = string(auds)
		sums = append(sums, strings.Join(mask.Summary("auditors.json", audHits), ","))
	}
	if sum := mask.JoinSummaries(sums...); sum != "" {
		a[mask.MaskedKey] = sum
	}
	return a, nil
}

// journalPolicy records p going into force, with rec, its PolicyRecord.
func (s *Server) journalPolicy(ctx context.Context, p *policy.Policy, rec recorder.Attrs, warns []policy.Diagnostic, trigger string, old *policy.Policy) error {
	attrs := recorder.Attrs{"trigger": trigger, "hash": p.Hash(), "roles": strconv.Itoa(len(p.Roles)), "warnings": strconv.Itoa(len(warns))}
	maps.Copy(attrs, rec)
	if src := s.policySource(); src != "" {
		attrs["source"] = src
	}
	if old != nil {
		attrs["previous"] = old.Hash()
	}
	if len(warns) > 0 {
		var b strings.Builder
		for i, w := range warns {
			if i > 0 {
				b.WriteString("\n")
			}
			b.WriteString(w.String())
		}
		attrs["warning-text"] = b.String()
	}
	_, err := s.journal.AppendEvent(ctx, EventPolicyLoaded, attrs)
	return err
}

// policySource names where the policy is read from.
func (s *Server) policySource() string {
	if p := s.opts.Config.PolicyPath; p != "" {
		return p
	}
	return s.opts.Config.Path
}

// withDevRole adds, under --dev, the development role to a policy that
// has no roles, as at start.
func (s *Server) withDevRole(p *policy.Policy) (*policy.Policy, error) {
	if s.opts.Dev == nil || len(p.Roles) > 0 || len(s.opts.DevLogins) == 0 {
		return p, nil
	}
	return p.WithRoles(DevRole(s.opts.DevLogins))
}

// stampPolicy sums the names, sizes and modification times of the files
// the configuration and the policy are read from: when it changes, they
// are read again.
func (s *Server) stampPolicy() string {
	src := s.policySource()
	if src == "" {
		return ""
	}
	files := []string{src}
	if fi, err := os.Stat(src); err == nil && fi.IsDir() {
		files, _ = filepath.Glob(filepath.Join(src, "*.hcl"))
		slices.Sort(files)
	}
	if c := s.opts.Config.Path; c != "" && c != src {
		files = append(files, c)
	}
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00", f)
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(h, "%d\x00%d\x00", fi.Size(), fi.ModTime().UnixNano())
		} else {
			fmt.Fprintf(h, "missing\x00")
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// watchPolicy reloads the configuration and the policy whenever their
// files change, until ctx is done.
func (s *Server) watchPolicy(ctx context.Context) {
	if s.policySource() == "" {
		return
	}
	tick.Every(ctx, policyWatchInterval, nil, func() {
		s.reloadMu.Lock()
		changed := s.stampPolicy() != s.policyStamp
		s.reloadMu.Unlock()
		if changed {
			s.Reload(ctx, ReloadChanged)
		}
	})
}

// activeGrants are an identity's grants in force now, for decisions.
func (s *Server) activeGrants(identity string, now time.Time) []policy.Grant {
	if s.grants == nil {
		return nil
	}
	return s.grants.Active(identity, now)
}

// grantEnded ends the live sessions under a grant that ended or was
// revoked, telling each client why.
func (s *Server) grantEnded(g grants.Grant, why string) {
	for _, l := range s.life.GrantEnded(g.ID, g.End, why == grants.GrantRevokedWhy) {
		s.log.Info("ssh session ended: its grant "+why, "session", l.ID, "grant", g.ID, "identity", l.Identity)
	}
	if why == grants.GrantRevokedWhy {
		s.revokeGrantCertificates(g)
	}
}

// revokeGrantCertificates revokes the certificates issued under grant g,
// which was revoked: each expires no later than the grant's end, but a
// host that trusts the user CA directly would take one until then. The
// revocation is the bastion's own (cause grant.revoked), in the KRL.
func (s *Server) revokeGrantCertificates(g grants.Grant) {
	now := s.now()
	var serials []uint64
	for _, c := range s.registry.Certificates() {
		if c.Grant == g.ID && !c.Revoked && c.ValidBefore.After(now) {
			serials = append(serials, c.Serial)
		}
	}
	if len(serials) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.Revoke(ctx, certauth.RevokeRequest{Serials: serials, Reason: "its grant " + g.ID + " was revoked",
		By: "bastion (grant " + g.ID + " revoked)", Attrs: recorder.Attrs{"cause": events.GrantRevoked, "grant": g.ID}})
	if err != nil {
		s.log.Error("revoke the certificates of a revoked grant: they stay valid until they expire, at the grant's end at the latest",
			"grant", g.ID, "serials", fmt.Sprint(serials), "error", err)
	}
}
