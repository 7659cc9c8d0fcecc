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
// hash, and every reload refused for mistakes, with its errors (the old
// policy, and the whole configuration in force, stay).
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
	every(ctx, policyWatchInterval, func() {
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
func (s *Server) grantEnded(g certauth.Grant, why string) {
	e := grantEndedAt(g.ID, g.End)
	if why == certauth.GrantRevokedWhy {
		e = grantEnd(g.ID, "was revoked")
	}
	for _, l := range s.life.grantEnded(g.ID, e) {
		s.log.Info("ssh session ended: its grant "+why, "session", l.ID, "grant", g.ID, "identity", l.Identity)
	}
}
