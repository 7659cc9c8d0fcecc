package bastion

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/oidc"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/storage"
)

// Config is a validated "bastion serve" configuration.
type Config struct {
	// Path is the file it was read from ("" for the built-in dev config).
	Path string
	// Home is the state directory (absolute); "" means the caller's
	// default (--home, $BASTION_HOME, ~/.bastion).
	Home string
	// Journal is the journal file; relative paths are inside Home.
	Journal string
	// Cluster is the cluster file (cluster.pub) that makes serve a
	// member of a cluster of instances on one PostgreSQL journal;
	// relative paths are inside Home. "" means Home's cluster.pub when
	// that file exists (see LoadCluster).
	Cluster string
	// JournalRecovery is how long serve tries to bring a failed journal
	// back (closing it and opening it again, with backoff) before it
	// exits non-zero for a supervisor to restart it.
	JournalRecovery time.Duration

	API          APIConfig
	Certificates CertificatesConfig
	Providers    []ProviderConfig
	// PolicyPath is the policy file or directory the "policy" attribute
	// names (absolute); "" when the roles are written in this file.
	PolicyPath string
	// Policy is the policy read from PolicyPath, or from this file's
	// identity and role blocks; PolicyWarnings are what its check found
	// suspicious.
	Policy         *policy.Policy
	PolicyWarnings []policy.Diagnostic
	// Grants configures just-in-time grants.
	Grants GrantsConfig
	// Alerts configures the journal's alarms.
	Alerts AlertsConfig
	// SSH is the SSH front door's listener; nil means none.
	SSH *front.Config
	// Targets are what SSH users reach, by name.
	Targets []front.Target
	// Access configures who may ask serve, through its access socket, to
	// journal their reads of the journal.
	Access AccessConfig
	// OperatorAccounts maps an OS account name to the identity
	// (SUBJECT@PROVIDER) of the person who uses it: an operator action
	// through the admin socket, or a read through the access socket, by
	// a process of that account without a token names that person
	// (verified "account"). Nil: none.
	OperatorAccounts map[string]string
	// Witnesses are the witnesses serve pushes its kept checkpoints to.
	Witnesses WitnessesConfig
}

// AccessConfig is the access block: the group whose members may ask serve
// to journal their reads, and read the journal.
type AccessConfig struct {
	// Group is the group's name as written ("" for none: only serve's
	// own user and root may use the access socket), and GID its gid.
	Group string
	GID   int
}

// APIConfig is the HTTPS API's listener.
type APIConfig struct {
	Listen string
	// TLSCert and TLSKey name a certificate to serve; when empty, a
	// self-signed one kept in the home directory is used and its
	// fingerprint printed for clients to pin.
	TLSCert, TLSKey string
	// Hostnames are put in the self-signed certificate.
	Hostnames []string
	// Rate limits of certificate requests (see certauth.APIOptions).
	RatePerIdentity  float64
	BurstPerIdentity int
	RatePerAddress   float64
	BurstPerAddress  int
}

// CertificatesConfig bounds the certificates issued.
type CertificatesConfig struct {
	MaxTTL     time.Duration
	MinRSABits int
	Backdate   time.Duration
	// KRLFile is where the OpenSSH KRL of revoked certificates is kept
	// for targets' RevokedKeys; relative paths are inside Home.
	KRLFile string
	// KnownHostsPattern is the host pattern of the @cert-authority lines
	// handed to clients (the names the host CA may vouch for) as
	// configured; "" means the default, the bastion's own names (see
	// [Config.KnownHostsPattern]). "*" trusts the host CA for every host
	// the client contacts.
	KnownHostsPattern string
}

// GrantsConfig configures just-in-time grants.
type GrantsConfig struct {
	// PendingTTL is how long a request waits for its approvals before it
	// expires; zero means the default (an hour).
	PendingTTL time.Duration
	// WebhookURL, if set, is posted every request and decision as JSON.
	WebhookURL string
}

// AlertsConfig configures the alarms raised when the journal is slow or
// fails: an ERROR log line and a metric always, and a POST to WebhookURL.
type AlertsConfig struct {
	// WebhookURL receives each alarm raised and cleared as JSON; "" means
	// the grants' webhook_url (and none without one).
	WebhookURL string
	// SlowCommit is how long an append may wait for its commit before the
	// slow-commit alarm is raised; zero means DefaultSlowCommit.
	SlowCommit time.Duration
}

// ProviderConfig is an identity provider, with what clients need for the
// device flow and what the web console needs for the authorization-code
// flow with PKCE.
type ProviderConfig struct {
	oidc.ProviderConfig
	DeviceClientID string
	DeviceScopes   []string
	// Web is the web client's settings; a zero ID means none.
	Web WebClientConfig
}

// WebClientConfig is a web client registered with an identity provider,
// which signs people in by the authorization-code flow with PKCE.
type WebClientConfig struct {
	ClientID string
	// SecretFile is where the client secret was read from ("" for a public
	// client); Secret is its content, read when the configuration was
	// loaded. The secret is never written in the configuration itself.
	SecretFile string
	Secret     string
	// RedirectURL is the redirect URL registered with the provider: https,
	// or http on a loopback host.
	RedirectURL string
}

// DefaultAPIListen is the API's address when the config names none.
const DefaultAPIListen = "127.0.0.1:8443"

// DefaultKRLFile is the KRL's name inside the home directory.
const DefaultKRLFile = "revoked.krl"

// hcl shapes of the file.
type fileConfig struct {
	Home    *string `hcl:"home,optional"`
	Journal *string `hcl:"journal,optional"`
	Cluster *string `hcl:"cluster,optional"`
	// JournalRecovery is how long serve tries to open a failed journal
	// again before it exits.
	JournalRecovery *string         `hcl:"journal_recovery,optional"`
	API             *apiBlock       `hcl:"api,block"`
	Certificates    *certBlock      `hcl:"certificates,block"`
	Providers       []providerBlock `hcl:"identity_provider,block"`
	Policy          *string         `hcl:"policy,optional"`
	Grants          *grantsBlock    `hcl:"grants,block"`
	Alerts          *alertsBlock    `hcl:"alerts,block"`
	SSH             *sshBlock       `hcl:"ssh,block"`
	Targets         []targetBlock   `hcl:"target,block"`
	Access          *accessBlock    `hcl:"access,block"`
	Witness         []witnessBlock  `hcl:"witness,block"`
	Witnesses       *witnessesBlock `hcl:"witnesses,block"`
	// OperatorAccounts maps OS accounts to identities.
	OperatorAccounts map[string]string `hcl:"operator_accounts,optional"`
	// Rest holds the identity and role blocks of a policy written in
	// this file; the policy package decodes it, strictly.
	Rest hcl.Body `hcl:",remain"`
}

type accessBlock struct {
	Group    *string   `hcl:"group,optional"`
	DefRange hcl.Range `hcl:",def_range"`
}

type grantsBlock struct {
	PendingTTL *string   `hcl:"pending_ttl,optional"`
	WebhookURL *string   `hcl:"webhook_url,optional"`
	DefRange   hcl.Range `hcl:",def_range"`
}

type alertsBlock struct {
	WebhookURL *string   `hcl:"webhook_url,optional"`
	SlowCommit *string   `hcl:"slow_commit,optional"`
	DefRange   hcl.Range `hcl:",def_range"`
}

type apiBlock struct {
	Listen           *string   `hcl:"listen,optional"`
	TLSCert          *string   `hcl:"tls_cert,optional"`
	TLSKey           *string   `hcl:"tls_key,optional"`
	Hostnames        []string  `hcl:"hostnames,optional"`
	RatePerIdentity  *float64  `hcl:"rate_per_identity,optional"`
	BurstPerIdentity *int      `hcl:"burst_per_identity,optional"`
	RatePerAddress   *float64  `hcl:"rate_per_address,optional"`
	BurstPerAddress  *int      `hcl:"burst_per_address,optional"`
	DefRange         hcl.Range `hcl:",def_range"`
}

type certBlock struct {
	MaxTTL     *string   `hcl:"max_ttl,optional"`
	MinRSABits *int      `hcl:"min_rsa_bits,optional"`
	Backdate   *string   `hcl:"backdate,optional"`
	KRLFile    *string   `hcl:"krl_file,optional"`
	KnownHosts *string   `hcl:"known_hosts_pattern,optional"`
	DefRange   hcl.Range `hcl:",def_range"`
}

type providerBlock struct {
	Name           string   `hcl:"name,label"`
	Issuer         string   `hcl:"issuer"`
	Audiences      []string `hcl:"audiences"`
	Algorithms     []string `hcl:"algorithms,optional"`
	MaxTokenAge    *string  `hcl:"max_token_age,optional"`
	EmailClaim     *string  `hcl:"email_claim,optional"`
	GroupsClaim    *string  `hcl:"groups_claim,optional"`
	SponsorClaim   *string  `hcl:"sponsor_claim,optional"`
	Delegation     *bool    `hcl:"delegation,optional"`
	DeviceClientID *string  `hcl:"device_client_id,optional"`
	DeviceScopes   []string `hcl:"device_scopes,optional"`
	// The web client (the console's sign-in).
	WebClientID         *string   `hcl:"web_client_id,optional"`
	WebClientSecretFile *string   `hcl:"web_client_secret_file,optional"`
	WebRedirectURL      *string   `hcl:"web_redirect_url,optional"`
	DefRange            hcl.Range `hcl:",def_range"`
}

// ConfigError is a configuration mistake and where it is.
type ConfigError struct {
	Diags hcl.Diagnostics
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	for i, d := range e.Diags {
		if i > 0 {
			b.WriteString("\n")
		}
		if d.Subject != nil {
			fmt.Fprintf(&b, "%s:%d:%d: ", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		b.WriteString(d.Summary)
		if d.Detail != "" {
			b.WriteString(": " + d.Detail)
		}
	}
	return b.String()
}

// LoadConfig reads and validates a serve configuration file (HCL). Every
// mistake is reported with file:line:col.
func LoadConfig(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, src)
}

// ParseConfig is LoadConfig on src read from path.
func ParseConfig(path string, src []byte) (*Config, error) {
	p := hclparse.NewParser()
	f, diags := p.ParseHCL(src, path)
	if diags.HasErrors() {
		return nil, &ConfigError{diags}
	}
	var fc fileConfig
	if diags := gohcl.DecodeBody(f.Body, nil, &fc); diags.HasErrors() {
		return nil, &ConfigError{diags}
	}
	v := &validator{file: path}
	if sb, ok := f.Body.(*hclsyntax.Body); ok {
		v.body = sb
	}
	cfg := v.config(&fc, filepath.Dir(path))
	if len(v.diags) > 0 {
		return nil, &ConfigError{v.diags}
	}
	cfg.Path = path
	if err := cfg.loadPolicy(&fc, src); err != nil {
		return nil, err
	}
	return cfg, nil
}

// PolicyOptions are what a policy is checked against: the providers and
// targets this configuration has, and its certificates' maximum lifetime.
func (c *Config) PolicyOptions() policy.Options {
	o := policy.Options{MaxTTL: c.Certificates.MaxTTL, Providers: []string{DevProviderName}}
	for _, p := range c.Providers {
		o.Providers = append(o.Providers, p.Name)
	}
	for _, t := range c.Targets {
		o.Targets = append(o.Targets, t.Name)
	}
	return o
}

// loadPolicy reads the policy: the file or directory "policy" names, or
// the identity and role blocks of this file (src), never both.
func (c *Config) loadPolicy(fc *fileConfig, src []byte) error {
	var err error
	if c.PolicyPath != "" {
		// The policy is in its own file: this one must not hold a
		// policy's blocks, nor anything else left over.
		inline, rest, diags := fc.Rest.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
			{Type: "identity", LabelNames: []string{"name"}}, {Type: "role", LabelNames: []string{"name"}},
		}})
		if len(inline.Blocks) > 0 {
			r := inline.Blocks[0].DefRange
			return fmt.Errorf("%s:%d:%d: policy = %q names a policy file, so this file cannot hold identity or role blocks too: move them there", r.Filename, r.Start.Line, r.Start.Column, c.PolicyPath)
		}
		if _, more := rest.Content(&hcl.BodySchema{}); diags.HasErrors() || more.HasErrors() {
			return &ConfigError{append(diags, more...)}
		}
		c.Policy, c.PolicyWarnings, err = policy.Load(c.PolicyPath, c.PolicyOptions())
		return err
	}
	c.Policy, c.PolicyWarnings, err = policy.DecodeConfig(c.Path, src, fc.Rest, c.PolicyOptions())
	return err
}

type validator struct {
	file  string
	body  *hclsyntax.Body // for attribute positions; nil if not native syntax
	diags hcl.Diagnostics
}

func (v *validator) errf(r hcl.Range, format string, args ...any) {
	rr := r
	v.diags = append(v.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: fmt.Sprintf(format, args...), Subject: &rr})
}

// attrf reports a mistake in attribute name of the block defined at
// block, at the attribute's position if it is there, else the block's.
func (v *validator) attrf(block hcl.Range, name, format string, args ...any) {
	v.errf(v.attrRange(block, name), format, args...)
}

// webhookURL checks the webhook_url attribute of block: https, or http to
// a loopback address only.
func (v *validator) webhookURL(block hcl.Range, raw string) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname()))) {
		v.attrf(block, "webhook_url", "webhook_url = %q is not an https URL (http only to a loopback address)", raw)
	}
}

func (v *validator) attrRange(block hcl.Range, name string) hcl.Range {
	if v.body == nil {
		return block
	}
	var find func(b *hclsyntax.Body) *hclsyntax.Block
	find = func(b *hclsyntax.Body) *hclsyntax.Block {
		for _, blk := range b.Blocks {
			if blk.DefRange().Start == block.Start {
				return blk
			}
			if in := find(blk.Body); in != nil {
				return in
			}
		}
		return nil
	}
	if blk := find(v.body); blk != nil {
		if a, ok := blk.Body.Attributes[name]; ok {
			return a.SrcRange
		}
	}
	return block
}

// topAttrRange is the position of a top-level attribute.
func (v *validator) topAttrRange(name string) hcl.Range {
	if v.body != nil {
		if a, ok := v.body.Attributes[name]; ok {
			return a.SrcRange
		}
	}
	return hcl.Range{Filename: v.file, Start: hcl.InitialPos, End: hcl.InitialPos}
}

// isLoopbackHost reports whether host is a loopback address or localhost.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (v *validator) duration(r hcl.Range, name string, s *string, def time.Duration) time.Duration {
	if s == nil {
		return def
	}
	d, err := time.ParseDuration(*s)
	if err != nil || d <= 0 {
		v.attrf(r, name, "%s = %q is not a positive duration such as \"10m\"", name, *s)
		return def
	}
	return d
}

var providerName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

func (v *validator) config(fc *fileConfig, dir string) *Config {
	cfg := &Config{Journal: "journal.db"}
	if fc.Home != nil {
		cfg.Home = *fc.Home
		if !filepath.IsAbs(cfg.Home) {
			cfg.Home = filepath.Join(dir, cfg.Home)
		}
	}
	if fc.Journal != nil {
		cfg.Journal = *fc.Journal
	}
	if fc.Cluster != nil {
		if cfg.Cluster = *fc.Cluster; cfg.Cluster == "" {
			v.errf(v.topAttrRange("cluster"), "cluster = \"\" names no file: remove the line for the home's cluster.pub")
		}
	}
	cfg.JournalRecovery = v.duration(v.topAttrRange("journal_recovery"), "journal_recovery", fc.JournalRecovery, DefaultJournalRecovery)
	cfg.API.Listen = DefaultAPIListen
	if a := fc.API; a != nil {
		if a.Listen != nil {
			cfg.API.Listen = *a.Listen
		}
		if _, _, err := net.SplitHostPort(cfg.API.Listen); err != nil {
			v.attrf(a.DefRange, "listen", "api listen = %q is not HOST:PORT", cfg.API.Listen)
		}
		if (a.TLSCert == nil) != (a.TLSKey == nil) {
			v.errf(a.DefRange, "api needs both tls_cert and tls_key, or neither (a self-signed certificate)")
		}
		if a.TLSCert != nil && a.TLSKey != nil {
			cfg.API.TLSCert, cfg.API.TLSKey = abs(dir, *a.TLSCert), abs(dir, *a.TLSKey)
		}
		cfg.API.Hostnames = a.Hostnames
		set := func(dst *float64, src *float64, name string) {
			if src != nil {
				if *src == 0 {
					v.attrf(a.DefRange, name, "%s = 0 would refuse every request: give a positive rate, or -1 for no limit", name)
				}
				*dst = *src
			}
		}
		set(&cfg.API.RatePerIdentity, a.RatePerIdentity, "rate_per_identity")
		set(&cfg.API.RatePerAddress, a.RatePerAddress, "rate_per_address")
		if a.BurstPerIdentity != nil {
			cfg.API.BurstPerIdentity = *a.BurstPerIdentity
		}
		if a.BurstPerAddress != nil {
			cfg.API.BurstPerAddress = *a.BurstPerAddress
		}
	}
	v.front(fc, cfg, dir)
	v.witnesses(fc, cfg)
	cfg.Certificates = CertificatesConfig{MaxTTL: certauth.DefaultMaxTTL, MinRSABits: certauth.DefaultMinRSABits, Backdate: certauth.DefaultBackdate, KRLFile: DefaultKRLFile}
	if c := fc.Certificates; c != nil {
		cfg.Certificates.MaxTTL = v.duration(c.DefRange, "max_ttl", c.MaxTTL, certauth.DefaultMaxTTL)
		if cfg.Certificates.MaxTTL > certauth.MaxMaxTTL {
			v.attrf(c.DefRange, "max_ttl", "max_ttl = %v is more than %v: certificates live minutes, not days", cfg.Certificates.MaxTTL, certauth.MaxMaxTTL)
		}
		cfg.Certificates.Backdate = v.duration(c.DefRange, "backdate", c.Backdate, certauth.DefaultBackdate)
		if cfg.Certificates.Backdate > certauth.MaxBackdate {
			v.attrf(c.DefRange, "backdate", "backdate = %v is more than %v", cfg.Certificates.Backdate, certauth.MaxBackdate)
		}
		if c.MinRSABits != nil {
			if *c.MinRSABits < 2048 {
				v.attrf(c.DefRange, "min_rsa_bits", "min_rsa_bits = %d is below 2048", *c.MinRSABits)
			}
			cfg.Certificates.MinRSABits = *c.MinRSABits
		}
		if c.KRLFile != nil {
			cfg.Certificates.KRLFile = *c.KRLFile
		}
		if c.KnownHosts != nil {
			if *c.KnownHosts == "" || strings.ContainsAny(*c.KnownHosts, " \t\r\n#") {
				v.attrf(c.DefRange, "known_hosts_pattern", "known_hosts_pattern = %q is not a known_hosts host pattern (comma-separated names and wildcards, no spaces)", *c.KnownHosts)
			}
			cfg.Certificates.KnownHostsPattern = *c.KnownHosts
		}
	}
	names := map[string]bool{}
	issuers := map[string]bool{}
	for _, pb := range fc.Providers {
		if !providerName.MatchString(pb.Name) {
			v.errf(pb.DefRange, "identity_provider %q: a name is lowercase letters, digits, '-' and '_'", pb.Name)
		}
		if names[pb.Name] {
			v.errf(pb.DefRange, "identity_provider %q is defined twice", pb.Name)
		}
		names[pb.Name] = true
		if issuers[pb.Issuer] {
			v.errf(pb.DefRange, "identity_provider %q: issuer %s is configured twice", pb.Name, pb.Issuer)
		}
		issuers[pb.Issuer] = true
		p := ProviderConfig{ProviderConfig: oidc.ProviderConfig{
			Name: pb.Name, Issuer: pb.Issuer, Audiences: pb.Audiences, Algorithms: pb.Algorithms,
			MaxTokenAge: v.duration(pb.DefRange, "max_token_age", pb.MaxTokenAge, 0),
		}, DeviceScopes: pb.DeviceScopes}
		if pb.EmailClaim != nil {
			p.EmailClaim = *pb.EmailClaim
		}
		if pb.GroupsClaim != nil {
			p.GroupsClaim = *pb.GroupsClaim
		}
		if pb.SponsorClaim != nil {
			p.SponsorClaim = *pb.SponsorClaim
		}
		if pb.Delegation != nil {
			p.Delegation = *pb.Delegation
		}
		if pb.DeviceClientID != nil {
			p.DeviceClientID = *pb.DeviceClientID
		}
		p.Web = v.webClient(dir, pb)
		if _, err := oidc.NewVerifier([]oidc.ProviderConfig{p.ProviderConfig}, oidc.VerifierOptions{}); err != nil {
			v.errf(pb.DefRange, "identity_provider %q: %v", pb.Name, err)
		}
		cfg.Providers = append(cfg.Providers, p)
	}
	if fc.Policy != nil {
		if *fc.Policy == "" {
			v.errf(v.topAttrRange("policy"), "policy = \"\" names no file or directory")
		}
		cfg.PolicyPath = abs(dir, *fc.Policy)
	}
	if g := fc.Grants; g != nil {
		cfg.Grants.PendingTTL = v.duration(g.DefRange, "pending_ttl", g.PendingTTL, 0)
		if g.WebhookURL != nil {
			v.webhookURL(g.DefRange, *g.WebhookURL)
			cfg.Grants.WebhookURL = *g.WebhookURL
		}
	}
	if a := fc.Access; a != nil && a.Group != nil {
		g, err := lookupGroup(*a.Group)
		if err != nil {
			v.attrf(a.DefRange, "group", "access group = %q: %v", *a.Group, err)
		}
		cfg.Access = AccessConfig{Group: *a.Group, GID: g}
	}
	if len(fc.OperatorAccounts) > 0 {
		known := map[string]bool{DevProviderName: true}
		for _, p := range cfg.Providers {
			known[p.Name] = true
		}
		r := v.topAttrRange("operator_accounts")
		for _, account := range slices.Sorted(maps.Keys(fc.OperatorAccounts)) {
			id := fc.OperatorAccounts[account]
			i := strings.LastIndexByte(id, '@')
			switch {
			case account == "" || strings.ContainsAny(account, " \t\r\n:"):
				v.errf(r, "operator_accounts: %q is not an OS account name", account)
			case i <= 0 || !known[id[i+1:]]:
				v.errf(r, "operator_accounts: %q = %q is not SUBJECT@PROVIDER of a configured identity_provider", account, id)
			}
		}
		cfg.OperatorAccounts = maps.Clone(fc.OperatorAccounts)
	}
	if a := fc.Alerts; a != nil {
		cfg.Alerts.SlowCommit = v.duration(a.DefRange, "slow_commit", a.SlowCommit, 0)
		if a.WebhookURL != nil {
			v.webhookURL(a.DefRange, *a.WebhookURL)
			cfg.Alerts.WebhookURL = *a.WebhookURL
		}
	}
	return cfg
}

// KnownHostsPattern is the host pattern of the @cert-authority lines
// clients put in known_hosts: known_hosts_pattern as configured, else the
// names the bastion presents host certificates for, as ssh looks them up
// in known_hosts:
//
//   - the front door's names ([front.Config.HostCertNames]: host_names, the
//     listen address, and localhost beside a loopback one), as
//     "[NAME]:PORT" unless the port is 22 ("ssh -p PORT LOGIN@TARGET@NAME");
//   - the targets' names, for ssh -J, which reaches "TARGET" on port 22.
//
// sshAddr is the front door's actual address (its port may have been
// chosen when it started listening); "" means the configured one. Without
// a front door, the default is "": the host CA vouches for no host, and
// clients are handed no line.
func (c *Config) KnownHostsPattern(sshAddr string) string {
	if c.Certificates.KnownHostsPattern != "" {
		return c.Certificates.KnownHostsPattern
	}
	if c.SSH == nil {
		return ""
	}
	if sshAddr == "" {
		sshAddr = c.SSH.Listen
	}
	_, port, _ := net.SplitHostPort(sshAddr)
	var names []string
	add := func(n string) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, n := range c.SSH.HostCertNames() {
		if port == "" || port == "22" {
			add(n)
		} else {
			add("[" + n + "]:" + port)
		}
	}
	for _, t := range c.Targets {
		add(t.Name)
	}
	return strings.Join(names, ",")
}

// lookupGroup is the gid of the group named (or numbered) name.
func lookupGroup(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr == nil {
			g, err = user.LookupGroupId(name)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("no such group on this host")
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("group %s has gid %q", name, g.Gid)
	}
	return gid, nil
}

func abs(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// webClient checks and returns an identity_provider block's web client
// settings, reading the secret file.
func (v *validator) webClient(dir string, pb providerBlock) WebClientConfig {
	var w WebClientConfig
	if pb.WebClientID == nil {
		for _, a := range []struct {
			name string
			set  bool
		}{{"web_client_secret_file", pb.WebClientSecretFile != nil}, {"web_redirect_url", pb.WebRedirectURL != nil}} {
			if a.set {
				v.attrf(pb.DefRange, a.name, "identity_provider %q: %s needs web_client_id", pb.Name, a.name)
			}
		}
		return w
	}
	w.ClientID = *pb.WebClientID
	if w.ClientID == "" || strings.ContainsAny(w.ClientID, " \t\r\n") {
		v.attrf(pb.DefRange, "web_client_id", "identity_provider %q: web_client_id = %q is not a client ID (not empty, no spaces)", pb.Name, w.ClientID)
	}
	if pb.WebRedirectURL == nil {
		v.attrf(pb.DefRange, "web_client_id", "identity_provider %q: web_client_id needs web_redirect_url, the redirect URL registered with the provider", pb.Name)
	} else {
		w.RedirectURL = *pb.WebRedirectURL
		if err := oidc.CheckWebRedirectURL(w.RedirectURL); err != nil {
			v.attrf(pb.DefRange, "web_redirect_url", "identity_provider %q: web_redirect_url: %v", pb.Name, err)
		}
	}
	if pb.WebClientSecretFile != nil {
		w.SecretFile = abs(dir, *pb.WebClientSecretFile)
		b, err := storage.ReadPrivateFile(w.SecretFile)
		w.Secret = strings.TrimSpace(string(b))
		switch {
		case err != nil:
			v.attrf(pb.DefRange, "web_client_secret_file", "identity_provider %q: web_client_secret_file: %v", pb.Name, err)
		case w.Secret == "" || strings.ContainsAny(w.Secret, "\r\n"):
			v.attrf(pb.DefRange, "web_client_secret_file", "identity_provider %q: web_client_secret_file %s: want the client secret on one line", pb.Name, w.SecretFile)
		}
	}
	return w
}

// DevTargetName is the local shell target of the built-in development
// configuration.
const DevTargetName = "shell"

// DevConfig is the configuration "serve --dev" runs without a file: the
// API on its default address, and an SSH front door on sshListen (""
// means front.DefaultSSHListen) with one target, DevTargetName, that runs shell
// (the user's login shell; "" means /bin/sh) as the bastion's own user.
func DevConfig(sshListen, shell string) (*Config, error) {
	if sshListen == "" {
		sshListen = front.DefaultSSHListen
	}
	if shell == "" {
		shell = "/bin/sh"
	}
	f := hclwrite.NewEmptyFile()
	ssh := f.Body().AppendNewBlock("ssh", nil).Body()
	ssh.SetAttributeValue("listen", cty.StringVal(sshListen))
	t := f.Body().AppendNewBlock("target", []string{DevTargetName}).Body()
	t.SetAttributeValue("command", cty.ListVal([]cty.Value{cty.StringVal(shell)}))
	return ParseConfig("", f.Bytes())
}

// DevProviderName is the embedded development issuer's provider name.
const DevProviderName = "dev"

// DevWebClientID is the web client "serve --dev" registers with the
// development issuer, a public client (no secret) whose redirect URL is
// DevWebRedirectPath on the API listener.
const DevWebClientID = "bastion-console"

// DevWebRedirectPath is the path of the dev web client's redirect URL on
// the API listener.
const DevWebRedirectPath = "/ui/callback"

// DevRole is the role "serve --dev" adds when the configuration has none:
// any dev identity may reach every target as logins.
func DevRole(logins []string) policy.Role { return policy.DevRole(logins) }
