package bastion

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion/console"
	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/bastion/tick"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/oidc"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/policy/mask"
	"github.com/bastionhq/bastion/policy/webhook"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/storage"
	"github.com/bastionhq/bastion/storage/postgres"
)

// Journal events of the bastion's own start and stop: examiners ask that
// the start and stop of logging be logged.
const (
	EventServeStarted = events.ServeStarted
	EventServeStopped = events.ServeStopped
)

// ErrNoLiveSession is returned by [Server.KillSession] and [AdminKill] for
// an ID that names no live session.
var ErrNoLiveSession = front.ErrNoLiveSession

// ServerOptions are what a Server is built from. The caller opens the
// journal and loads the keys; the Server owns neither.
type ServerOptions struct {
	Config      *Config
	Home        string
	Journal     *recorder.Journal
	Store       storage.Store
	Authorities *certauth.Authorities
	// Dev, when set, is the embedded development issuer, served on
	// loopback and trusted as provider "dev". Never in production.
	Dev *oidc.DevIssuer
	// DevLogins are the logins of the dev role added when the
	// configuration has no roles (serve --dev).
	DevLogins []string
	// FrontLimits bound the SSH front door's sessions; zero fields mean
	// the defaults (front.DefaultIdleTimeout, front.DefaultMaxDuration).
	FrontLimits front.Limits
	// Commits, if not nil, is the observer the journal was opened with
	// (its OnCommit as recorder.Options.OnCommit): the server measures
	// commit latency through it. If nil, the latency histogram stays
	// empty; the alarms still see an append that waits too long.
	Commits *CommitObserver
	Logger  hclog.Logger
	Now     func() time.Time
	// CloseJournal, if set, closes Journal and its store; the server then
	// owns the journal (see Server.CloseJournal).
	CloseJournal func() error
	// ReopenJournal, if set, opens the journal again after a fault: serve
	// then recovers from a failed journal without a restart, or exits
	// when it cannot within the configuration's journal_recovery.
	ReopenJournal JournalOpener
	// Cluster, if not nil, makes the server a member of a cluster (see
	// LoadCluster): the journal must have been opened with
	// recorder.Options IndexBase = Cluster.IndexBase().
	Cluster *Cluster
	// ConsoleMaxSessions bounds the web console's sessions; zero means
	// console.DefaultMaxSessions.
	ConsoleMaxSessions int
	// ConfigOverrides, if set, applies the command line's overrides
	// (serve --listen) to the configuration as Reload reads it again.
	ConfigOverrides func(*Config)
}

// Server is "bastion serve": the HTTPS API that exchanges OIDC tokens for
// certificates, and the admin socket the CLI revokes through.
type Server struct {
	opts    ServerOptions
	journal *liveJournal // the journal in force
	// faultSince is when the journal's current streak of faults began,
	// recoveredAt when it last recovered; owned by watchJournal.
	faultSince, recoveredAt time.Time
	maskers                 textMaskers // the text masker's profile, compiled
	readLimits              uidLimits   // the access socket's callers, by uid
	// startPolicyRecord is PolicyRecord of the policy NewServer put in
	// force, for Run's policy.loaded.
	startPolicyRecord recorder.Attrs
	log               hclog.Logger
	now               func() time.Time
	registry          *certauth.Registry
	issuer            *certauth.Issuer
	api               *certauth.API
	tls               *certauth.APICertificate
	krlPath           string

	apiLn   net.Listener
	adminLn net.Listener
	// accessLn is the access socket, accessPath its name beside the
	// journal ("<journal>.sock").
	accessLn   net.Listener
	accessPath string
	// verifier verifies the OIDC tokens of the API's clients, and those
	// operators and readers give through the sockets.
	verifier *oidc.Verifier
	// operatorAccounts is the configuration's operator_accounts in force
	// (set by NewServer and Reload).
	operatorAccounts atomic.Pointer[map[string]string]
	front            *front.Front    // the SSH front door; nil without an ssh block
	life             *front.Sessions // the front door's live sessions and their limits
	metrics          *metrics        // served at GET /metrics on the API listener
	health           *journalHealth
	witnessing       *witnessing     // nil without witness blocks
	alerts           *webhook.Alerts // nil without a webhook for alerts
	devURL           string
	console          *console.Console // nil without a provider with a web client
	devRun           func(context.Context) error

	// configSHA256 is the hex SHA-256 of the configuration file's bytes
	// in force (read when the server was built, or by the last reload
	// put in force; guarded by reloadMu after Run starts), or configErr
	// why it could not be read.
	configSHA256, configErr string
	// inForce is the configuration in force (guarded by reloadMu): the
	// one the server was built from, or the last reload put in force.
	inForce *Config

	krlMu sync.Mutex // serializes KRL writes

	// grants are the just-in-time grants.
	grants *grants.Grants

	// cluster follows the other members' logs; nil for a standalone
	// bastion.
	cluster *clusterState

	// policy is the policy in force; Reload swaps it.
	policy atomic.Pointer[policy.Policy]
	// reloadMu serializes reloads; policyStamp (guarded by it) is what
	// the policy's files looked like when last read.
	reloadMu    sync.Mutex
	policyStamp string
}

// NewServer checks the configuration against the keys, loads the
// certificate registry from the journal, writes the KRL and opens the
// listeners. Run serves them.
func NewServer(ctx context.Context, opts ServerOptions) (_ *Server, err error) {
	s := &Server{opts: opts, log: opts.Logger, now: opts.Now, inForce: opts.Config, journal: &liveJournal{j: opts.Journal, close: opts.CloseJournal}}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	if s.now == nil {
		s.now = time.Now
	}
	cfg := opts.Config
	limits := opts.FrontLimits
	if limits == (front.Limits{}) && cfg.SSH != nil {
		limits = cfg.SSH.Limits
	}
	s.life = front.NewSessions(limits, s.now)
	s.metrics = newMetrics(func() float64 { return float64(s.life.Count()) })
	s.hashConfig()
	if err := s.journalHealth(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.closeListeners()
			if s.devRun != nil {
				// Serving with a done context closes its listener.
				done, cancel := context.WithCancel(context.Background())
				cancel()
				s.devRun(done)
			}
		}
	}()

	if len(cfg.Witnesses.List) > 0 {
		if s.witnessing, err = newWitnessing(cfg.Witnesses, s.journal, s.metrics, s.alerts, s.log.Named("witness")); err != nil {
			return nil, err
		}
		s.health.witnesses = s.witnessing
		if opts.Commits != nil {
			opts.Commits.attachPublish(s.witnessing.client.Publish)
		}
	}

	providers := make([]oidc.ProviderConfig, 0, len(cfg.Providers)+1)
	issuers := make([]certauth.IssuerInfo, 0, len(cfg.Providers)+1)
	for _, p := range cfg.Providers {
		providers = append(providers, p.ProviderConfig)
		issuers = append(issuers, certauth.IssuerInfo{Name: p.Name, Issuer: p.Issuer, Audience: p.Audiences, DeviceClientID: p.DeviceClientID, DeviceScopes: p.DeviceScopes})
	}
	if opts.Dev != nil && len(cfg.Providers) > 0 {
		return nil, errors.New("the development issuer cannot run beside real identity providers: anyone who can read the home could mint tokens for their roles; drop --dev, or use a configuration without identity_provider blocks")
	}
	if opts.Dev != nil {
		// The address the home's issuer last had, when it is free again:
		// tokens minted before a restart stay good (their issuer is this
		// URL). Else any free loopback port.
		url, run, err := "", func(context.Context) error { return nil }, errors.New("no previous address")
		if prev, perr := neturl.Parse(opts.Dev.Issuer()); perr == nil && prev.Scheme == "http" && isLoopbackHost(prev.Hostname()) && prev.Port() != "" {
			url, run, err = opts.Dev.Listen(net.JoinHostPort("127.0.0.1", prev.Port()))
		}
		if err != nil {
			if url, run, err = opts.Dev.Listen("127.0.0.1:0"); err != nil {
				return nil, err
			}
		}
		if err := opts.Dev.Publish(url); err != nil {
			return nil, err
		}
		s.devURL, s.devRun = url, run
		providers = append(providers, oidc.ProviderConfig{Name: DevProviderName, Issuer: url, Audiences: []string{oidc.DevAudience}, Delegation: true})
		issuers = append(issuers, certauth.IssuerInfo{Name: DevProviderName, Issuer: url, Audience: []string{oidc.DevAudience}})
	}
	if len(providers) == 0 {
		return nil, errors.New("no identity provider is configured: add an identity_provider block (or use --dev to try bastion with the development issuer)")
	}
	verifier, err := oidc.NewVerifier(providers, oidc.VerifierOptions{Now: s.now, Logger: s.log.Named("oidc")})
	if err != nil {
		return nil, err
	}
	s.verifier = verifier
	accounts := cfg.OperatorAccounts
	s.operatorAccounts.Store(&accounts)
	pol := cfg.Policy
	if pol == nil {
		// A configuration built in code, not read from a file.
		if pol, err = policy.New(nil); err != nil {
			return nil, err
		}
	}
	if pol, err = s.withDevRole(pol); err != nil {
		return nil, err
	}
	// What the start's policy.loaded will keep of the policy: checked
	// here, so that a policy the journal cannot hold is refused before
	// anything is served.
	if s.startPolicyRecord, err = PolicyRecord(pol); err != nil {
		return nil, err
	}
	if len(pol.Roles) == 0 {
		s.log.Warn("no roles are configured: every certificate request and every session will be refused")
	}
	for _, w := range cfg.PolicyWarnings {
		s.log.Warn("policy: " + w.String())
	}
	s.policy.Store(pol)
	s.policyStamp = s.stampPolicy()

	// The certificates, revocations and grants in force come from the
	// journal's signed leaves, never from an index beside them: an edit of
	// the file must not bring a revoked certificate back.
	log, err := opts.Journal.ReadLog(ctx, func(name string) bool { return certauth.RegistryEvents(name) || grants.GrantEvents(name) })
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var self uint16
	if opts.Cluster != nil {
		self = opts.Cluster.Self.ID
	}
	s.registry, err = certauth.LoadRegistryOf(log, self, s.now(), false)
	if err == nil {
		s.grants, err = grants.OpenGrants(ctx, log, grants.GrantsOptions{
			IndexBase: opts.Cluster.IndexBase(), CatchUp: s.catchUpGrant,
			Journal: s.journal, Policy: func() grants.GrantPolicy { return s.Policy() },
			PendingTTL: cfg.Grants.PendingTTL, WebhookURL: cfg.Grants.WebhookURL, OnEnd: s.grantEnded,
			Logger: s.log.Named("grants"), Now: s.now, TextMasker: s.textMasker,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("journal %w", err)
	}
	s.krlPath = cfg.Certificates.KRLFile
	if !filepath.IsAbs(s.krlPath) {
		s.krlPath = filepath.Join(opts.Home, s.krlPath)
	}
	if opts.Cluster != nil {
		// The other members' certificates, revocations and grants, before
		// the KRL is written and anything is served.
		if err := s.openCluster(ctx, opts.Cluster); err != nil {
			return nil, err
		}
	}
	if err := s.writeKRL(); err != nil {
		return nil, err
	}

	s.issuer, err = certauth.NewIssuer(ctx, certauth.IssuerOptions{
		IndexBase: opts.Cluster.IndexBase(),
		CA:        opts.Authorities.User, OtherCAs: []*certauth.Authority{opts.Authorities.Host, opts.Authorities.Target}, Verifier: verifier, Policy: pol, Journal: s.journal, Registry: s.registry,
		MinRSABits: cfg.Certificates.MinRSABits, MaxTTL: cfg.Certificates.MaxTTL, Backdate: cfg.Certificates.Backdate,
		Grants: s.activeGrants, Now: s.now, Logger: s.log.Named("ca"), TextMasker: s.textMasker,
	})
	if err != nil {
		return nil, err
	}

	host, _, _ := net.SplitHostPort(cfg.API.Listen)
	hosts := append([]string{}, cfg.API.Hostnames...)
	if host != "" && !net.ParseIP(host).IsUnspecified() {
		hosts = append(hosts, host)
	}
	s.tls, err = certauth.LoadTLS(opts.Home, cfg.API.TLSCert, cfg.API.TLSKey, hosts, s.now())
	if err != nil {
		return nil, err
	}
	// The keys are loaded once (a rotation takes a restart); the
	// known_hosts lines follow the targets in force.
	s.api = certauth.NewAPI(certauth.APIOptions{
		Issuer: s.issuer, CA: func() *certauth.CAResponse { return s.caResponse(issuers) },
		KRL: func() ([]byte, error) {
			s.krlMu.Lock()
			defer s.krlMu.Unlock()
			return os.ReadFile(s.krlPath)
		},
		RatePerIdentity: cfg.API.RatePerIdentity, BurstPerIdentity: cfg.API.BurstPerIdentity,
		RatePerAddress: cfg.API.RatePerAddress, BurstPerAddress: cfg.API.BurstPerAddress,
		Grants: s.grants, Reads: s.recordReadAPI, Logger: s.log.Named("api"), Now: s.now,
	})
	s.apiLn, err = net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return nil, fmt.Errorf("API listener: %w", err)
	}
	if opts.Dev != nil {
		// The console's sign-in, by the authorization-code flow with
		// PKCE, returns to the API listener.
		if err := opts.Dev.RegisterWebClient(oidc.DevWebClient{ID: DevWebClientID, RedirectURL: s.APIURL() + DevWebRedirectPath}); err != nil {
			return nil, err
		}
	}
	if s.console, err = s.newConsole(); err != nil {
		return nil, err
	}
	s.adminLn, err = listenAdmin(opts.Home)
	if err != nil {
		return nil, err
	}
	if s.accessPath = s.journalPath(); s.accessPath != "" {
		s.accessPath += AccessSocketSuffix
		if s.accessLn, err = listenAccess(s.accessPath, cfg.Access); err != nil {
			return nil, err
		}
		s.warnUnreachable(cfg.Access)
	}
	if cfg.SSH != nil {
		s.front, err = front.New(front.Options{
			Config: cfg.SSH, Targets: cfg.Targets, Home: opts.Home, Authorities: opts.Authorities,
			Registry: s.registry, Journal: s.journal, Logger: s.log.Named("ssh"), Now: s.now, Sessions: s.life, Metrics: s.metrics,
			Policy: s.Policy, Grants: s.activeGrants,
		})
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

// hashConfig notes the SHA-256 of the configuration file, for the
// serve.started event. The file is read again, a moment after LoadConfig
// parsed it: the Config keeps no copy of its bytes.
func (s *Server) hashConfig() {
	p := s.opts.Config.Path
	if p == "" {
		return
	}
	b, err := os.ReadFile(p)
	if err != nil {
		s.configErr = err.Error()
		return
	}
	sum := sha256.Sum256(b)
	s.configSHA256 = hex.EncodeToString(sum[:])
}

// journalHealth sets up the journal's health: its metrics, /readyz and
// the alarms, posted to the alerts' webhook (else the grants'). They read
// the journal in force, the one a recovery opened included.
func (s *Server) journalHealth() error {
	cfg := s.opts.Config
	url := cfg.Alerts.WebhookURL
	if url == "" {
		url = cfg.Grants.WebhookURL
	}
	if url != "" {
		a, err := webhook.NewAlerts(url, s.log.Named("alerts"))
		if err != nil {
			return err
		}
		s.alerts = a
	}
	journal := func() journalProbe { return s.journal.current() }
	s.health = newJournalHealth(journal, cfg.Alerts.SlowCommit, s.metrics, s.alerts, s.log.Named("journal"))
	s.metrics.watchJournal(func() float64 {
		if journal().Err() != nil {
			return 0
		}
		return 1
	}, func() float64 { return pendingAge(journal()).Seconds() })
	if s.opts.Commits != nil {
		s.opts.Commits.attach(s.health.observe)
	}
	return nil
}

func (s *Server) closeListeners() {
	if s.alerts != nil {
		s.alerts.Close()
	}
	if s.grants != nil {
		s.grants.Close()
	}
	if s.cluster != nil {
		s.cluster.closeStores()
	}
	for _, ln := range []net.Listener{s.apiLn, s.adminLn, s.accessLn} {
		if ln != nil {
			ln.Close()
		}
	}
	if s.front != nil {
		s.front.Close()
	}
}

// SSHAddr is the SSH front door's address, "" without an ssh block.
func (s *Server) SSHAddr() string {
	if s.front == nil {
		return ""
	}
	return s.front.Addr().String()
}

// KnownHostsPattern is the host pattern of the @cert-authority lines the
// API hands to clients, for the configuration in force (see
// [Config.KnownHostsPattern]).
func (s *Server) KnownHostsPattern() string {
	s.reloadMu.Lock()
	cfg := s.inForce
	s.reloadMu.Unlock()
	return cfg.KnownHostsPattern(s.SSHAddr())
}

// APIURL is the API's base URL.
func (s *Server) APIURL() string { return "https://" + s.apiLn.Addr().String() }

// TLS is the API's certificate (its fingerprint for clients to pin).
func (s *Server) TLS() *certauth.APICertificate { return s.tls }

// DevIssuerURL is the development issuer's URL, "" without --dev.
func (s *Server) DevIssuerURL() string { return s.devURL }

// KRLPath is where the KRL of revoked certificates is kept.
func (s *Server) KRLPath() string { return s.krlPath }

func (s *Server) caResponse(issuers []certauth.IssuerInfo) *certauth.CAResponse {
	a := s.opts.Authorities
	target := a.Target.AuthorizedKeys()
	return &certauth.CAResponse{
		UserCA:            a.User.AuthorizedKeys(),
		HostCA:            a.Host.AuthorizedKeys(),
		TargetCA:          target,
		KnownHosts:        a.KnownHostsLines(s.KnownHostsPattern()),
		SSHAddress:        s.SSHAddr(),
		TrustedUserCAKeys: target,
		SSHDConfig:        []string{"TrustedUserCAKeys /etc/ssh/bastion_target_ca.pub"},
		Issuers:           issuers,
	}
}

// userCAKeys are the user CA keys the KRL names.
func (s *Server) userCAKeys() []ssh.PublicKey {
	var keys []ssh.PublicKey
	for _, k := range s.opts.Authorities.User.Trusted {
		keys = append(keys, k.Key)
	}
	return keys
}

func (s *Server) writeKRL() error {
	s.krlMu.Lock()
	defer s.krlMu.Unlock()
	return s.registry.WriteKRL(s.krlPath, s.userCAKeys(), s.now())
}

// Revoke revokes certificates, journals it and rewrites the KRL.
func (s *Server) Revoke(ctx context.Context, req certauth.RevokeRequest) (*certauth.RevokeResult, error) {
	req.TextMasker = s.textMasker
	res, err := s.registry.Revoke(ctx, s.journal, req, s.now())
	if err != nil {
		return nil, err
	}
	reason, _ := certauth.RevocationReason(s.textMasker, req.Reason)
	s.log.Info("certificates revoked", "serials", fmt.Sprint(res.Serials), "identity", res.Identity, "by", req.By, "reason", reason)
	if s.front != nil {
		for _, l := range s.life.Revoked(res) {
			s.log.Info("ssh session ended: its certificate was revoked", "session", l.ID, "serial", l.Serial, "identity", l.Identity)
		}
	}
	if err := s.writeKRL(); err != nil {
		return res, fmt.Errorf("revoked (journal leaf %d), but the KRL was not rewritten: %w", res.Leaf, err)
	}
	return res, nil
}

// catchUpGrant reads the other members' logs for a grant not known here
// (GrantsOptions.CatchUp); nothing for a standalone bastion.
func (s *Server) catchUpGrant(id string) {
	if s.cluster != nil {
		s.cluster.catchUpGrant(id)
	}
}

// textMasker masks the free text operators and identities supply
// (reasons, comments) with the policy's text_masking profile.
func (s *Server) textMasker() *mask.Masker { return s.maskers.text(s.Policy()) }

// LiveSessions lists the SSH front door's sessions that are running.
func (s *Server) LiveSessions() []front.LiveSession {
	if s.front == nil {
		return nil
	}
	return s.life.List()
}

// KillSession ends the live session whose journal ID is id (or the one
// whose ID starts with id): the client is told, with reason if not empty,
// and the end leaf says it was killed, by whom (killed-by), with the
// operator's attributes, if any (operator, operator.verified…). It returns
// ErrNoLiveSession if no live session has that ID.
//
// In a cluster, a session no live session of this member matches but
// another member's log shows open is that member's: KillSession journals
// a kill request (session.kill_requested) and waits, a few seconds, for
// the holder's end leaf, which names the request; the result's Remote
// says what happened.
func (s *Server) KillSession(ctx context.Context, id, reason, by string, operator recorder.Attrs) (LiveSessionResult, error) {
	err := ErrNoLiveSession
	var l front.LiveSession
	// The reason is kept, shown to the client and logged masked.
	m := s.textMasker()
	if s.front != nil {
		l, err = s.life.Kill(id, reason, by, operator, m)
	}
	if errors.Is(err, ErrNoLiveSession) && s.cluster != nil {
		return s.cluster.killRemote(ctx, id, reason, by, operator)
	}
	reason, _ = front.KillReason(m, reason)
	if err == nil {
		s.log.Info("ssh session killed", "session", l.ID, "identity", l.Identity, "by", by, "reason", reason)
	}
	return LiveSessionResult{LiveSession: l}, err
}

// shutdownTimeout bounds a graceful shutdown: requests in flight finish,
// live sessions record their end. Shutdown returns as soon as they have,
// not after a fixed wait: a client that holds its connection open once
// its session's end is committed is disconnected.
const shutdownTimeout = 10 * time.Second

// startedAttrs are the attributes of the serve.started event.
func (s *Server) startedAttrs() recorder.Attrs {
	a := recorder.Attrs{
		"pid":   strconv.Itoa(os.Getpid()),
		"api":   s.apiLn.Addr().String(),
		"admin": s.adminLn.Addr().String(),
	}
	if p := s.opts.Config.Path; p != "" {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		a["config"] = p
		if s.configSHA256 != "" {
			a["config.sha256"] = s.configSHA256
		} else {
			a["config.error"] = s.configErr
		}
	} else {
		a["config"] = "(none)"
	}
	// Where the state lives, as absolute paths.
	if h := s.opts.Home; h != "" {
		if abs, err := filepath.Abs(h); err == nil {
			h = abs
		}
		a["home"] = h
	}
	if j := s.journalPath(); j != "" {
		a["journal"] = j
	} else if j := s.opts.Config.Journal; postgres.IsLocation(j) {
		a["journal"] = postgres.Redact(j)
	}
	if s.accessLn != nil {
		a["access"] = s.accessPath
		if g := s.opts.Config.Access.Group; g != "" {
			a["access.group"] = g
		}
	}
	if m := s.opts.Config.OperatorAccounts; len(m) > 0 {
		a["operator_accounts"] = accountsText(m)
	}
	if s.front != nil {
		a["ssh"] = s.front.Addr().String()
		a["ssh.max-unauthenticated"] = strconv.Itoa(s.opts.Config.SSH.MaxUnauthenticated)
		limits := s.life.Limits()
		a["ssh.idle-timeout"] = limitText(limits.IdleTimeout)
		a["ssh.max-duration"] = limitText(limits.MaxDuration)
		a["ssh.fips"] = strconv.FormatBool(s.opts.Config.SSH.FIPS)
		a["ssh.max-connections-per-address"] = strconv.Itoa(s.opts.Config.SSH.MaxConnsPerAddress)
		a["targets"] = strings.Join(targetNames(s.opts.Config.Targets), ",")
	}
	if s.devURL != "" {
		// Identities of the development provider are not vouched for by
		// any institution: a reader of the journal must be able to tell.
		a["dev-issuer"] = s.devURL
		a["dev.provider"] = DevProviderName
		a["dev.issuer"] = s.devURL
	}
	if w := s.opts.Config.Witnesses; len(w.List) > 0 {
		// Who anchors the journal: each witness's name, key and URL, as
		// an auditor needs them to verify its cosignatures.
		for _, x := range w.List {
			a["witness."+x.Name] = x.Key.VKey + " " + x.URL
		}
		a["witness.threshold"] = strconv.Itoa(w.Threshold)
		a["witness.stale-after"] = w.StaleAfter.String()
	}
	a["policy.hash"] = s.Policy().Hash()
	if c := s.opts.Cluster; c != nil {
		c.startedAttrs(a)
	}
	return a
}

// limitText is a session limit as the configuration writes it: a
// duration, or "off" for none (a negative limit).
func limitText(d time.Duration) string {
	if d < 0 {
		return "off"
	}
	return d.String()
}

// Run serves until ctx is done, then shuts down gracefully: new sessions
// are refused, live ones are ended and record their end, requests in
// flight finish (all within shutdownTimeout, and no longer than they
// take) before it returns. The start
// and the stop are journal events (serve.started, serve.stopped); if the
// start cannot be journaled, Run serves nothing.
func (s *Server) Run(ctx context.Context) error {
	if _, err := s.journal.AppendEvent(ctx, EventServeStarted, s.startedAttrs()); err != nil {
		s.closeListeners()
		if s.devRun != nil {
			// Serving with a done context closes its listener.
			done, cancel := context.WithCancel(context.Background())
			cancel()
			s.devRun(done)
		}
		return fmt.Errorf("journal the start of serving: %w", err)
	}
	if err := s.journalPolicy(ctx, s.Policy(), s.startPolicyRecord, s.opts.Config.PolicyWarnings, ReloadStart, nil); err != nil {
		s.log.Error("journal the policy in force", "error", err)
	}
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	httpLog := s.log.Named("http")
	watch := &transportWatch{metrics: s.metrics, log: httpLog}
	api := &http.Server{
		Handler:           watch.handler(s.health.withHealth(s.metrics.withMetrics(s.withConsole(s.api)))),
		TLSConfig:         certauth.ServerTLSConfig(s.tls),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    apiMaxHeaderBytes,
		ConnContext:       watch.connContext,
		ConnState:         watch.connState,
		ErrorLog:          log.New(watch.errorLog(httpLog.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})), "", 0),
	}
	if s.console != nil {
		// The console's output streams end with the server.
		api.RegisterOnShutdown(s.console.Close)
	}
	connContext := func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	admin := &http.Server{
		Handler:           s.adminHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext:       connContext,
	}
	access := &http.Server{
		Handler:           s.accessHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    apiMaxHeaderBytes,
		ConnContext:       connContext,
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8) // room for every server below to fail
	serve := func(name string, f func() error) {
		wg.Go(func() {
			if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel(err)
			}
		})
	}
	serve("API", func() error { return api.ServeTLS(apiListener{s.apiLn}, "", "") })
	serve("admin socket", func() error { return admin.Serve(s.adminLn) })
	if s.accessLn != nil {
		serve("access socket", func() error { return access.Serve(s.accessLn) })
	}
	if s.devRun != nil {
		serve("development issuer", func() error { return s.devRun(ctx) })
	}
	if s.front != nil {
		serve("SSH", func() error { return s.front.Serve(ctx) })
	}
	serve("journal", func() error { return s.watchJournal(ctx) })
	if s.cluster != nil {
		wg.Go(func() { s.cluster.run(ctx) })
	}
	wg.Go(func() { s.watchPolicy(ctx) })
	wg.Go(func() { s.health.run(ctx) })
	// The witnesses are pushed to until the last checkpoint, kept after
	// serve.stopped, is cosigned (or the flush gives up): their context
	// outlives ctx.
	wctx, wcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer wcancel()
	var witnessesDone sync.WaitGroup
	if s.witnessing != nil {
		witnessesDone.Go(func() { s.witnessing.client.Run(wctx) })
	}
	// Expired certificates leave the registry (and the KRL) once a minute.
	wg.Go(func() {
		tick.Every(ctx, time.Minute, nil, func() {
			s.registry.Prune(s.now())
			if err := s.writeKRL(); err != nil {
				s.log.Error("rewrite the KRL", "error", err)
			}
		})
	})
	<-ctx.Done()
	stopped := recorder.Attrs{"reason": events.StopRequested}
	if parent.Err() == nil {
		stopped["reason"] = events.StopError
	}
	if c := context.Cause(ctx); c != nil {
		stopped["detail"] = c.Error()
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer scancel()
	if s.front != nil {
		// First, so that each session's end leaf is committed while the
		// journal is sure to be open.
		n := s.life.Shutdown()
		stopped["ssh.sessions-ended"] = strconv.Itoa(n)
		s.log.Info("shutting down", "ssh sessions ended", n)
	}
	// The listeners drain side by side: an API client's HTTP/2
	// connection takes a second to go away gracefully, which the SSH
	// sessions need not wait for. Each returns as soon as it is done, at
	// the latest at the bound.
	var drain sync.WaitGroup
	var apiErr, adminErr, accessErr, frontErr error
	drain.Go(func() { apiErr = api.Shutdown(sctx) })
	drain.Go(func() { adminErr = admin.Shutdown(sctx) })
	if s.accessLn != nil {
		drain.Go(func() { accessErr = access.Shutdown(sctx) })
	}
	if s.front != nil {
		drain.Go(func() { frontErr = s.front.Shutdown(sctx) })
	}
	drain.Wait()
	err := errors.Join(apiErr, adminErr, accessErr, frontErr)
	if s.front != nil {
		if n := s.life.Count(); n > 0 {
			stopped["ssh.sessions-left"] = strconv.Itoa(n)
		}
	}
	wg.Wait()
	s.grants.Close()
	close(errs)
	for e := range errs {
		err = errors.Join(err, e)
	}
	if err != nil {
		stopped["error"] = err.Error()
	}
	jctx, jcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer jcancel()
	if _, jerr := s.journal.AppendEvent(jctx, EventServeStopped, stopped); jerr != nil {
		err = errors.Join(err, fmt.Errorf("journal the stop of serving: %w", jerr))
	}
	if s.witnessing != nil {
		s.flushWitnesses(context.WithoutCancel(ctx))
	}
	wcancel()
	witnessesDone.Wait()
	if s.alerts != nil {
		// The last alarms, the witnesses' during the flush included, are
		// posted, or given up, before serve returns.
		s.alerts.Close()
	}
	return err
}

// flushWitnesses keeps a checkpoint of the whole journal, serve.stopped
// included, and waits a bounded time for the witnesses to cosign it, so
// that a journal at rest is witnessed to its last leaf.
func (s *Server) flushWitnesses(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, witnessFlushTimeout)
	defer cancel()
	s.witnessing.stopping.Store(true)
	if err := s.journal.current().Publish(ctx); err != nil {
		s.log.Error("keep the last checkpoint for the witnesses", "error", err)
		return
	}
	if err := s.witnessing.client.Flush(ctx); err != nil {
		s.log.Error("the journal's last leaves are not witnessed", "error", err, "waited", witnessFlushTimeout)
		return
	}
	s.log.Info("the witnesses cosigned the journal's last checkpoint")
}
