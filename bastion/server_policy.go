package bastion

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder"
)

// Journal events of policy loads: every policy put in force, with its
// hash, and every reload refused, with its errors (the old policy stays).
const (
	EventPolicyLoaded  = "policy.loaded"
	EventPolicyRefused = "policy.refused"
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

// ReloadPolicy reads the policy again (from its file or directory, or the
// configuration file's role blocks) and puts it in force: new
// certificates and new sessions are decided by it; running sessions keep
// the decision that let them start, and grants keep their end. A file
// with mistakes is refused with them and the old policy stays. Either way
// the journal records it, before the new policy takes effect.
func (s *Server) ReloadPolicy(ctx context.Context, trigger string) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.policyStamp = s.stampPolicy()
	p, warns, err := s.opts.Config.ReloadPolicy()
	if err == nil {
		p, err = s.withDevRole(p)
	}
	if err != nil {
		s.log.Error("policy reload refused: the old policy stays in force", "trigger", trigger, "error", err)
		msg := err.Error()
		if len(msg) > 4096 {
			msg = msg[:4096] + "…"
		}
		s.metrics.reloads.WithLabelValues("refused").Inc()
		attrs := recorder.Attrs{"trigger": trigger, "error": msg, "in-force": s.Policy().Hash()}
		if _, jerr := s.journal.AppendEvent(ctx, EventPolicyRefused, attrs); jerr != nil {
			s.log.Error("journal a refused policy reload", "error", jerr)
		}
		return err
	}
	for _, w := range warns {
		s.log.Warn("policy: " + w.String())
	}
	old := s.Policy()
	if err := s.journalPolicy(ctx, p, warns, trigger, old); err != nil {
		return fmt.Errorf("the new policy was not put in force: %w", err)
	}
	s.policy.Store(p)
	s.issuer.SetPolicy(p)
	s.metrics.reloads.WithLabelValues("loaded").Inc()
	s.log.Info("policy in force", "trigger", trigger, "hash", p.Hash(), "previous", old.Hash())
	return nil
}

// journalPolicy records p going into force.
func (s *Server) journalPolicy(ctx context.Context, p *policy.Policy, warns []policy.Diagnostic, trigger string, old *policy.Policy) error {
	attrs := recorder.Attrs{"trigger": trigger, "hash": p.Hash(), "roles": strconv.Itoa(len(p.Roles)), "warnings": strconv.Itoa(len(warns))}
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
// the policy is read from: when it changes, the policy is read again.
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

// watchPolicy reloads the policy whenever its files change, until ctx is
// done.
func (s *Server) watchPolicy(ctx context.Context) {
	if s.policySource() == "" {
		return
	}
	every(ctx, policyWatchInterval, func() {
		s.reloadMu.Lock()
		changed := s.stampPolicy() != s.policyStamp
		s.reloadMu.Unlock()
		if changed {
			s.ReloadPolicy(ctx, ReloadChanged)
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
func (s *Server) grantEnded(g certauth.Grant, why string) {
	e := grantEndedAt(g.ID, g.End)
	if why == certauth.GrantRevokedWhy {
		e = grantEnd(g.ID, "was revoked")
	}
	for _, l := range s.life.grantEnded(g.ID, e) {
		s.log.Info("ssh session ended: its grant "+why, "session", l.ID, "grant", g.ID, "identity", l.Identity)
	}
}
