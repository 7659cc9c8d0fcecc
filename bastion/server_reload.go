package bastion

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// Journal events of configuration reloads: a reload put in force (the
// configuration file's hash, what changed), and one refused because it
// changes what only a restart can (the fields, and the hash that stays).
const (
	EventConfigReloaded      = events.ConfigReloaded
	EventConfigReloadRefused = events.ConfigReloadRefused
)

// A RestartError refuses a reload whose configuration changes fields
// that take a restart; nothing of it was put in force.
type RestartError struct {
	// Fields name the changes, as the configuration file spells them
	// ("ssh.listen", "identity_provider"), sorted.
	Fields []string
}

func (e *RestartError) Error() string {
	return "the configuration changes " + strings.Join(e.Fields, ", ") + ", which take a restart: nothing of it was put in force (restart serve, or undo those changes and reload)"
}

// Reload reads the configuration file again (and the policy, from its
// own files or this one's role blocks) and puts it in force, whole or not
// at all:
//
//   - the policy, the targets (added, removed, changed) and the session
//     limits (idle_timeout, max_duration) apply to new sessions and new
//     certificates; live sessions keep the target, limits and decision
//     they started with; operator_accounts applies to the next request
//     on the admin and access sockets;
//   - a change to anything else (listeners, home, journal, keys and
//     certificates, identity providers, grants, the other ssh settings)
//     takes a restart, so the reload is refused, naming those fields;
//   - a file with mistakes is refused with them.
//
// Either way the journal records it before anything takes effect, and a
// refusal changes nothing: the journal never names as in force a
// configuration that is not.
func (s *Server) Reload(ctx context.Context, trigger string) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.policyStamp = s.stampPolicy()
	if s.opts.Config.Path == "" {
		return s.refusePolicy(ctx, trigger, errors.New("the configuration was not read from a file"))
	}
	fresh, sum, err := s.rereadConfig()
	if err != nil {
		return s.refusePolicy(ctx, trigger, err)
	}
	p, err := s.withDevRole(fresh.Policy)
	if err != nil {
		return s.refusePolicy(ctx, trigger, err)
	}
	rec, err := PolicyRecord(p)
	if err != nil {
		return s.refusePolicy(ctx, trigger, err)
	}
	if fields := restartFields(s.inForce, fresh); len(fields) > 0 {
		return s.refuseConfig(ctx, trigger, sum, fields, &RestartError{Fields: fields})
	}
	var set *front.TargetSet
	if s.front != nil {
		if set, err = s.front.LoadTargets(fresh.Targets); err != nil {
			return s.refuseConfig(ctx, trigger, sum, []string{"target"}, err)
		}
	}
	limits := s.opts.FrontLimits
	if limits == (front.Limits{}) && fresh.SSH != nil {
		limits = fresh.SSH.Limits
	}
	limits = limits.WithDefaults()

	for _, w := range fresh.PolicyWarnings {
		s.log.Warn("policy: " + w.String())
	}
	added, removed, changed := targetChanges(s.inForce.Targets, fresh.Targets)
	attrs := recorder.Attrs{
		"trigger": trigger, "config": s.opts.Config.Path, "config.sha256": sum, "previous": s.configSHA256,
		"policy.hash": p.Hash(),
		"targets":     strings.Join(targetNames(fresh.Targets), ","),
	}
	for k, v := range map[string][]string{"targets.added": added, "targets.removed": removed, "targets.changed": changed} {
		if len(v) > 0 {
			attrs[k] = strings.Join(v, ",")
		}
	}
	if m := fresh.OperatorAccounts; len(m) > 0 {
		attrs["operator_accounts"] = accountsText(m)
	}
	if s.front != nil {
		attrs["ssh.idle-timeout"] = limitText(limits.IdleTimeout)
		attrs["ssh.max-duration"] = limitText(limits.MaxDuration)
	}
	if _, err := s.journal.AppendEvent(ctx, EventConfigReloaded, attrs); err != nil {
		s.log.Error("journal a configuration reload: nothing of it was put in force", "trigger", trigger, "error", err)
		return fmt.Errorf("the new configuration was not put in force: %w", err)
	}
	old := s.Policy()
	if err := s.journalPolicy(ctx, p, rec, fresh.PolicyWarnings, trigger, old); err != nil {
		// config.reloaded, committed, names the policy in force.
		s.log.Error("journal the policy in force", "error", err)
	}
	s.policy.Store(p)
	s.issuer.SetPolicy(p)
	if set != nil {
		s.front.SetTargets(set)
	}
	s.life.SetLimits(limits)
	accounts := fresh.OperatorAccounts
	s.operatorAccounts.Store(&accounts)
	s.inForce, s.configSHA256 = fresh, sum
	s.metrics.reloads.WithLabelValues("loaded").Inc()
	s.log.Info("configuration in force", "trigger", trigger, "sha256", sum, "policy", p.Hash(), "previous policy", old.Hash(),
		"targets added", strings.Join(added, ","), "targets removed", strings.Join(removed, ","), "targets changed", strings.Join(changed, ","))
	return nil
}

// rereadConfig reads and checks the configuration file, with the command
// line's overrides, and returns it with the SHA-256 of the very bytes it
// was parsed from.
func (s *Server) rereadConfig() (*Config, string, error) {
	path := s.opts.Config.Path
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	cfg, err := ParseConfig(path, src)
	if err != nil {
		return nil, "", err
	}
	if s.opts.ConfigOverrides != nil {
		s.opts.ConfigOverrides(cfg)
	}
	sum := sha256.Sum256(src)
	return cfg, hex.EncodeToString(sum[:]), nil
}

// refusePolicy refuses a reload for mistakes in the file (or the policy's
// files): logged, counted and journaled as policy.refused.
func (s *Server) refusePolicy(ctx context.Context, trigger string, err error) error {
	s.log.Error("reload refused: the configuration and policy in force stay", "trigger", trigger, "error", err)
	msg := err.Error()
	if len(msg) > 4096 {
		msg = msg[:4096] + "…"
	}
	s.metrics.reloads.WithLabelValues("refused").Inc()
	attrs := recorder.Attrs{"trigger": trigger, "error": msg, "in-force": s.Policy().Hash()}
	if _, jerr := s.journal.AppendEvent(ctx, EventPolicyRefused, attrs); jerr != nil {
		s.log.Error("journal a refused reload", "error", jerr)
	}
	return err
}

// refuseConfig refuses a valid configuration that cannot be put in force
// as a whole: logged, counted and journaled as config.reload_refused with
// the fields, the file's hash and the hash that stays in force.
func (s *Server) refuseConfig(ctx context.Context, trigger, sum string, fields []string, err error) error {
	s.log.Error("reload refused: the configuration in force stays, nothing of the new one was applied", "trigger", trigger, "fields", strings.Join(fields, ","), "error", err)
	s.metrics.reloads.WithLabelValues("refused").Inc()
	attrs := recorder.Attrs{
		"trigger": trigger, "fields": strings.Join(fields, ","), "error": err.Error(),
		"config": s.opts.Config.Path, "config.sha256": sum, "in-force": s.configSHA256,
	}
	if _, jerr := s.journal.AppendEvent(ctx, EventConfigReloadRefused, attrs); jerr != nil {
		s.log.Error("journal a refused reload", "error", jerr)
	}
	return err
}

// restartFields names what differs between the configuration in force
// and fresh that a reload cannot change: everything but the policy, the
// targets and the ssh block's session limits.
func restartFields(old, fresh *Config) []string {
	var fields []string
	diff := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			fields = append(fields, name)
		}
	}
	diff("home", old.Home, fresh.Home)
	diff("journal", old.Journal, fresh.Journal)
	diff("cluster", old.Cluster, fresh.Cluster)
	diff("journal_recovery", old.JournalRecovery, fresh.JournalRecovery)
	diff("api.listen", old.API.Listen, fresh.API.Listen)
	diff("api.tls_cert", old.API.TLSCert, fresh.API.TLSCert)
	diff("api.tls_key", old.API.TLSKey, fresh.API.TLSKey)
	diff("api.hostnames", old.API.Hostnames, fresh.API.Hostnames)
	diff("api.rate_per_identity", old.API.RatePerIdentity, fresh.API.RatePerIdentity)
	diff("api.burst_per_identity", old.API.BurstPerIdentity, fresh.API.BurstPerIdentity)
	diff("api.rate_per_address", old.API.RatePerAddress, fresh.API.RatePerAddress)
	diff("api.burst_per_address", old.API.BurstPerAddress, fresh.API.BurstPerAddress)
	diff("certificates.max_ttl", old.Certificates.MaxTTL, fresh.Certificates.MaxTTL)
	diff("certificates.min_rsa_bits", old.Certificates.MinRSABits, fresh.Certificates.MinRSABits)
	diff("certificates.backdate", old.Certificates.Backdate, fresh.Certificates.Backdate)
	diff("certificates.krl_file", old.Certificates.KRLFile, fresh.Certificates.KRLFile)
	diff("certificates.known_hosts_pattern", old.Certificates.KnownHostsPattern, fresh.Certificates.KnownHostsPattern)
	diff("identity_provider", old.Providers, fresh.Providers)
	diff("policy", old.PolicyPath, fresh.PolicyPath)
	diff("grants.pending_ttl", old.Grants.PendingTTL, fresh.Grants.PendingTTL)
	diff("grants.webhook_url", old.Grants.WebhookURL, fresh.Grants.WebhookURL)
	diff("alerts", old.Alerts, fresh.Alerts)
	diff("access.group", old.Access, fresh.Access)
	diff("witness", old.Witnesses.summary(), fresh.Witnesses.summary())
	switch {
	case (old.SSH == nil) != (fresh.SSH == nil):
		fields = append(fields, "ssh")
	case old.SSH != nil:
		o, n := old.SSH, fresh.SSH
		diff("ssh.listen", o.Listen, n.Listen)
		diff("ssh.host_names", o.HostNames, n.HostNames)
		diff("ssh.max_auth_tries", o.MaxAuthTries, n.MaxAuthTries)
		diff("ssh.pre_auth_timeout", o.PreAuthTimeout, n.PreAuthTimeout)
		diff("ssh.fips", o.FIPS, n.FIPS)
		diff("ssh.max_connections_per_address", o.MaxConnsPerAddress, n.MaxConnsPerAddress)
		diff("ssh.max_unauthenticated", o.MaxUnauthenticated, n.MaxUnauthenticated)
	}
	slices.Sort(fields)
	return fields
}

// targetNames are the names of targets, sorted.
func targetNames(targets []front.Target) []string {
	names := make([]string, 0, len(targets))
	for _, t := range targets {
		names = append(names, t.Name)
	}
	slices.Sort(names)
	return names
}

// targetChanges names the targets added, removed and changed from old to
// new, each list sorted.
func targetChanges(old, new []front.Target) (added, removed, changed []string) {
	before := map[string]front.Target{}
	for _, t := range old {
		before[t.Name] = t
	}
	after := map[string]bool{}
	for _, t := range new {
		after[t.Name] = true
		o, ok := before[t.Name]
		switch {
		case !ok:
			added = append(added, t.Name)
		case !reflect.DeepEqual(o, t):
			changed = append(changed, t.Name)
		}
	}
	for name := range before {
		if !after[name] {
			removed = append(removed, name)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	slices.Sort(changed)
	return added, removed, changed
}
