package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/apiclient"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/termtext"
	"github.com/bastionhq/bastion/storage"
)

func init() {
	register(&command{
		name:    "login",
		summary: "get a short-lived SSH certificate from the bastion",
		usage:   loginUsage,
		run:     runLogin,
	})
}

const loginUsage = `Usage:
    bastion login --server URL [--token-file FILE | --token-env VAR | --issuer NAME]
                  [--key PATH] [--ca-fingerprint SHA256:...] [--known-hosts FILE]
                  [--login NAME]... [--ttl DURATION] [--ticket REF] [--json]
                  [--renew [--renew-before DURATION]] [--profile FILE]
    bastion login [flags]      (after the first login: the profile's server)

Gets a short-lived OpenSSH certificate from the bastion's API at URL and
sets up ssh to use it:

    KEY            the private key: --key PATH, else the profile's, else
                   ~/.ssh/bastion_ed25519. If there is none, login makes
                   an Ed25519 key (mode 0600, KEY.pub 0644). An existing
                   key is used as it is, but not if others may read it.
    KEY-cert.pub   the certificate, replaced atomically; "ssh -i KEY" uses it
    known_hosts    gains the bastion's @cert-authority lines, each only once
                   (--known-hosts FILE, else the profile's, else
                   ~/.ssh/known_hosts)

The bastion wants an OpenID Connect token that says who you are. Agents
pass theirs with --token-file (a Kubernetes projected service account
token, a SPIFFE JWT-SVID, a CI job's ID token written to a file; the file
is read again for every certificate, so a rotated token is picked up) or
--token-env. The token is never printed. Without either, login runs the
device flow with the identity provider the bastion names (--issuer NAME
chooses when it names several): it prints a web address and a code, you
approve in any browser, and login carries on by itself.

The API is spoken over https only; a URL without a scheme means https. A
bastion whose TLS certificate no trusted root vouches for, like the
self-signed one "bastion serve" makes, is trusted by its fingerprint:
pass the one "bastion serve" printed with --ca-fingerprint. Any other
certificate is then refused before anything is sent.

After a successful login, login remembers in the client profile the
server, its pin, where the token comes from (the token file's path, the
variable's name, or the device flow and its --issuer; never the token),
and the key and known_hosts files. A later "bastion login", "login
--renew", "bastion grants …" and "bastion status" need none of those
flags. A flag given wins over the profile: a token flag replaces the
profile's token source, and a --server other than the profile's ignores
the profile (and the next successful login remembers the new one). The
profile is --profile FILE, else $BASTION_PROFILE, else
$XDG_CONFIG_HOME/bastion/profile.json, else
~/.config/bastion/profile.json; it is written atomically, mode 0600, its
directory 0700 if login makes it. A profile others may write, or that
another user owns, is refused.

With --renew, login stays in the foreground and gets a new certificate
once two thirds of the current one's lifetime have passed (or, with
--renew-before, that long before it expires), showing the token afresh
each time. A failed renewal is logged to stderr with how long the current
certificate has left, or that it has expired, and retried with jittered
backoff. The first certificate must be obtained for --renew to start;
after that, SIGINT or SIGTERM ends login with status 0.

Flags:
    --server URL              the bastion's API, https://HOST[:PORT]
                              (required the first time; then the profile's)
    --token-file FILE         read the token from FILE
    --token-env VAR           read the token from the environment variable VAR
    --issuer NAME             the identity provider for the device flow
    --key PATH                the private key (default ~/.ssh/bastion_ed25519)
    --ca-fingerprint SHA256:X pin the API's TLS certificate
    --known-hosts FILE        the known_hosts file to update
                              (default ~/.ssh/known_hosts)
    --login NAME              ask for this login only; repeat for several
                              (default: every login the policy grants)
    --ttl DURATION            ask for a shorter lifetime, like 5m
                              (default: the policy's)
    --ticket REF              the ticket or change you work on; it goes into
                              the certificate's key ID and the journal
    --json                    print a JSON object instead of the summary;
                              with --renew, one line of JSON per certificate
    --renew                   keep the certificate fresh until stopped
    --renew-before DURATION   with --renew, renew when this much of the
                              lifetime is left (default: a third)
    --profile FILE            the client profile to read and write
                              (default: $BASTION_PROFILE, else
                              ~/.config/bastion/profile.json)

The JSON object has: certificate_file, key_file, key_created, serial,
key_id, identity, principals, valid_after, valid_before (RFC 3339), rule,
known_hosts_file, known_hosts_added, ssh_command (the command to
connect, with TARGET standing for the host to reach; "" if the bastion
runs no SSH listener) and profile_file (the client profile written; ""
if it could not be).

Examples:
    $ bastion login --server https://bastion.example
    $ bastion login
    $ bastion login --server 10.0.0.5:8443 --ca-fingerprint SHA256:3q2+7wXbOJu1fXmGnXh1cXk2sBvQbPeY7ddQvP0hZ7s
    $ bastion login --server https://bastion.example --token-env BASTION_ID_TOKEN --login deploy --ttl 5m --ticket CHG-1234
    $ bastion login --server https://bastion.example --token-file /var/run/secrets/tokens/bastion --renew --json
    $ bastion login --renew`

// loginDefaultKey is the key login uses without --key, in ~/.ssh.
const loginDefaultKey = "bastion_ed25519"

// loginMaxToken caps a token read from a file or the environment: an ID
// token is a few KiB.
const loginMaxToken = 64 << 10

// loginOptions are the flags of one "bastion login".
type loginOptions struct {
	apiFlags
	key, knownHosts  string
	logins           loginList
	ttl, renewBefore time.Duration
	ticket           string
	asJSON, renew    bool
}

// apiFlags are the flags of every command that calls the bastion's API as
// the user ("login", "grants …", "status"): where the API is, how its TLS
// certificate is pinned, and where the user's token comes from; and the
// client profile that supplies those not given (see [apiFlags.resolve]).
type apiFlags struct {
	server, tokenFile, tokenEnv, issuer, fingerprint string

	// profileFlag is the value of --profile, "" if not given.
	profileFlag string
	// profilePath is where the client profile is, "" if it cannot be
	// found ($HOME not set); set by resolve.
	profilePath string
	// profile is the client profile the flags were completed from, nil
	// if none applied; set by resolve.
	profile *clientProfile
}

// register adds the flags to fs.
func (a *apiFlags) register(fs *flagSet) {
	fs.StringVar(&a.server, "server", "", "API `URL`")
	fs.StringVar(&a.tokenFile, "token-file", "", "token `FILE`")
	fs.StringVar(&a.tokenEnv, "token-env", "", "token environment `VAR`")
	fs.StringVar(&a.issuer, "issuer", "", "device flow issuer `NAME`")
	fs.StringVar(&a.fingerprint, "ca-fingerprint", "", "TLS certificate `SHA256:...`")
	fs.StringVar(&a.profileFlag, "profile", "", "client profile `FILE`")
}

// resolve checks the flags, as usage errors of command cmd, and completes
// them from the client profile. The profile applies when --server is not
// given or names the profile's server; then each connection flag not
// given comes from it, the token source as a whole (one token flag given
// replaces the profile's token source). Without --server and without a
// profile, it is a usage error that says to log in first. A server
// without a scheme becomes https.
func (a *apiFlags) resolve(e *env, cmd string) error {
	switch {
	case a.tokenFile != "" && a.tokenEnv != "":
		return usageErrorf("give --token-file or --token-env, not both")
	case a.issuer != "" && (a.tokenFile != "" || a.tokenEnv != ""):
		return usageErrorf("--issuer chooses the provider for the device flow; it has no use with --token-file or --token-env")
	}
	path, err := e.profilePath(a.profileFlag)
	if err != nil {
		if a.server == "" {
			return a.noServer(cmd, err.Error())
		}
	} else {
		a.profilePath = path
		p, err := loadProfile(path)
		switch {
		case err != nil && a.server == "":
			return err
		case err != nil:
			fmt.Fprintf(e.stderr, "bastion: warning: not using the client profile: %s\n", messageText(err.Error()))
		case p == nil && a.server == "":
			return a.noServer(cmd, "there is no client profile at "+path+" yet")
		case p != nil:
			a.apply(p)
		}
	}
	a.server = serverURL(a.server)
	return nil
}

// apply completes the flags from profile p if --server was not given or
// names p's server; see [apiFlags.resolve].
func (a *apiFlags) apply(p *clientProfile) {
	if a.server != "" && !sameServer(a.server, p.Server) {
		return
	}
	a.profile = p
	if a.server == "" {
		a.server = p.Server
	}
	if a.fingerprint == "" {
		a.fingerprint = p.CAFingerprint
	}
	if a.tokenFile == "" && a.tokenEnv == "" && a.issuer == "" {
		a.tokenFile, a.tokenEnv, a.issuer = p.TokenFile, p.TokenEnv, p.Issuer
	}
}

// noServer is the usage error of command cmd run without --server and
// without a profile to name one; why says why there is none.
func (a *apiFlags) noServer(cmd, why string) error {
	first := "log in once with the server's address; later commands remember it: "
	if cmd == "login" {
		first = "the first login names the server; later ones remember it: "
	}
	return withHint(usageErrorf("%s needs --server URL, the bastion's API: %s", cmd, why),
		first+"bastion login --server URL [--ca-fingerprint SHA256:...] [--token-file FILE | --token-env VAR]",
		fmt.Sprintf("run \"bastion help %s\" for usage", cmd))
}

// remember writes the client profile after a successful login: the
// server, the pin and the token source as given or taken from the
// profile, and the key and known_hosts files used. It says on stderr if
// it cannot, and returns the profile's path, "" if not written.
func (a *apiFlags) remember(e *env, key, knownHosts string) string {
	if a.profilePath == "" {
		fmt.Fprintln(e.stderr, "bastion: warning: the server is not remembered: no place for the client profile ($HOME is not set; --profile FILE names one)")
		return ""
	}
	p := &clientProfile{Server: a.server, CAFingerprint: a.fingerprint, TokenEnv: a.tokenEnv, Issuer: a.issuer, Key: key, KnownHosts: knownHosts}
	if a.tokenFile != "" {
		abs, err := filepath.Abs(a.tokenFile)
		if err != nil {
			fmt.Fprintf(e.stderr, "bastion: warning: the server is not remembered: %s\n", messageText(err.Error()))
			return ""
		}
		p.TokenFile = abs
	}
	if err := saveProfile(a.profilePath, p); err != nil {
		fmt.Fprintf(e.stderr, "bastion: warning: the server is not remembered: %s\n", messageText(err.Error()))
		return ""
	}
	return a.profilePath
}

// client returns the API client the flags describe.
func (a *apiFlags) client() (*apiclient.Client, error) {
	api, err := apiclient.NewClient(a.server, apiclient.ClientOptions{Fingerprint: a.fingerprint})
	if err != nil {
		return nil, &usageError{err}
	}
	return api, nil
}

// tokenSource returns where the user's token comes from: the token file
// (read again at every call: agents' tokens rotate), the environment
// variable, or the device flow with the identity provider the bastion
// offers for it.
func (a *apiFlags) tokenSource(ctx context.Context, e *env, api *apiclient.Client) (func(context.Context) (string, error), error) {
	switch {
	case a.tokenFile != "":
		path := a.tokenFile
		return func(context.Context) (string, error) { return loginReadTokenFile(path) }, nil
	case a.tokenEnv != "":
		name := a.tokenEnv
		return func(context.Context) (string, error) {
			v := e.getenv(name)
			if v == "" {
				return "", fmt.Errorf("$%s is not set or empty", name)
			}
			return loginCleanToken(v, "$"+name)
		}, nil
	}
	return deviceToken(ctx, e, api, a.issuer)
}

// loginList is a repeatable string flag.
type loginList []string

func (l *loginList) String() string { return strings.Join(*l, ",") }
func (l *loginList) Set(v string) error {
	if v == "" {
		return errors.New("a login cannot be empty")
	}
	*l = append(*l, v)
	return nil
}

func runLogin(ctx context.Context, e *env, args []string) error {
	o, err := parseLogin(e, args)
	if err != nil {
		return err
	}
	l, err := newLoginClient(ctx, e, o)
	if err != nil {
		return err
	}
	first, err := l.obtain(ctx)
	if err != nil {
		return err
	}
	l.profileFile = o.apiFlags.remember(e, l.keyPath, l.knownHosts)
	switch {
	case o.asJSON && o.renew:
		// One object per line, as each renewal adds one.
		err = json.NewEncoder(e.stdout).Encode(l.jsonOf(first))
	case o.asJSON:
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(l.jsonOf(first))
	default:
		l.printSummary(first)
	}
	if err != nil || !o.renew {
		return err
	}
	l.keyCreated = false // renewals reuse it
	return l.renew(ctx, first)
}

// parseLogin parses and checks the flags; every mistake is a usage error.
func parseLogin(e *env, args []string) (*loginOptions, error) {
	fs := e.flags()
	o := &loginOptions{}
	o.apiFlags.register(fs)
	fs.StringVar(&o.key, "key", "", "private key `PATH`")
	fs.StringVar(&o.knownHosts, "known-hosts", "", "known_hosts `FILE`")
	fs.Var(&o.logins, "login", "login `NAME`")
	fs.DurationVar(&o.ttl, "ttl", 0, "certificate lifetime `DURATION`")
	fs.StringVar(&o.ticket, "ticket", "", "ticket `REF`")
	fs.BoolVar(&o.asJSON, "json", false, "JSON output")
	fs.BoolVar(&o.renew, "renew", false, "keep renewing")
	fs.DurationVar(&o.renewBefore, "renew-before", 0, "renew `DURATION` before expiry")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, usageErrorf("login takes no arguments")
	case o.ttl < 0:
		return nil, usageErrorf("--ttl %v: want a positive duration", o.ttl)
	case o.renewBefore < 0:
		return nil, usageErrorf("--renew-before %v: want a positive duration", o.renewBefore)
	case o.renewBefore > 0 && !o.renew:
		return nil, usageErrorf("--renew-before only applies with --renew")
	}
	if err := o.apiFlags.resolve(e, "login"); err != nil {
		return nil, err
	}
	return o, nil
}

// A loginClient holds what every certificate request of one login needs.
type loginClient struct {
	e     *env
	o     *loginOptions
	api   *apiclient.Client
	token func(ctx context.Context) (string, error) // called before every request

	signer     ssh.Signer
	keyCreated bool
	keyPath    string
	certPath   string
	knownHosts string
	// customKnownHosts is set when knownHosts is not ssh's default, so
	// the ssh command must name it.
	customKnownHosts bool
	serverHost       string // for the ssh command, when the SSH address names none
	profileFile      string // the client profile written, "" if none
}

func newLoginClient(ctx context.Context, e *env, o *loginOptions) (*loginClient, error) {
	api, err := o.apiFlags.client()
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(o.server) // NewClient parsed it already
	l := &loginClient{e: e, o: o, api: api, serverHost: u.Hostname()}

	sshDir := func() (string, error) {
		home := e.getenv("HOME")
		if home == "" {
			return "", withHint(errors.New("cannot find ~/.ssh: $HOME is not set"), "pass --key PATH and --known-hosts FILE")
		}
		return filepath.Join(home, ".ssh"), nil
	}
	l.keyPath, l.knownHosts = o.key, o.knownHosts
	if p := o.apiFlags.profile; p != nil {
		if l.keyPath == "" {
			l.keyPath = p.Key
		}
		if l.knownHosts == "" {
			l.knownHosts = p.KnownHosts
		}
	}
	if l.keyPath == "" || l.knownHosts == "" {
		dir, err := sshDir()
		if err != nil {
			return nil, err
		}
		if l.keyPath == "" {
			l.keyPath = filepath.Join(dir, loginDefaultKey)
		}
		if l.knownHosts == "" {
			l.knownHosts = filepath.Join(dir, "known_hosts")
		}
	}
	if l.keyPath, err = filepath.Abs(l.keyPath); err != nil {
		return nil, err
	}
	if l.knownHosts, err = filepath.Abs(l.knownHosts); err != nil {
		return nil, err
	}
	if dir, err := sshDir(); err != nil || filepath.Join(dir, "known_hosts") != l.knownHosts {
		l.customKnownHosts = true
	}
	l.certPath = l.keyPath + "-cert.pub"

	if l.token, err = o.apiFlags.tokenSource(ctx, e, api); err != nil {
		return nil, err
	}

	if l.signer, l.keyCreated, err = loginKey(l.keyPath); err != nil {
		return nil, err
	}
	return l, nil
}

// deviceToken returns a token source that runs the device flow with the
// identity provider the bastion offers for it (the one named issuer, if
// not "").
func deviceToken(ctx context.Context, e *env, api *apiclient.Client, issuer string) (func(context.Context) (string, error), error) {
	ca, err := api.CA(ctx)
	if err != nil {
		return nil, loginExplain(fmt.Errorf("ask the bastion for its identity providers: %w", err))
	}
	iss, err := loginChooseIssuer(ca.Issuers, issuer)
	if err != nil {
		return nil, err
	}
	stderr := e.stderr
	flow := &apiclient.DeviceFlow{
		Issuer:     iss,
		HTTPClient: &http.Client{Timeout: apiclient.DefaultTimeout},
		Prompt: func(p apiclient.DevicePrompt) {
			fmt.Fprintf(stderr, "bastion: to log in with %s, open %s and enter the code %s\n",
				termtext.Line(iss.Name), termtext.Line(p.VerificationURI), termtext.Line(p.UserCode))
			if p.VerificationURIComplete != "" {
				fmt.Fprintf(stderr, "bastion: or open %s\n", termtext.Line(p.VerificationURIComplete))
			}
			if !p.Expiry.IsZero() {
				fmt.Fprintf(stderr, "bastion: waiting for your approval (the code expires in %s)\n", time.Until(p.Expiry).Round(time.Second))
			}
		},
	}
	return flow.Token, nil
}

// loginChooseIssuer picks the identity provider for the device flow: the one
// named, else the only one that offers it.
func loginChooseIssuer(issuers []certauth.IssuerInfo, name string) (certauth.IssuerInfo, error) {
	var names []string
	var device []certauth.IssuerInfo
	for _, iss := range issuers {
		if iss.DeviceClientID != "" {
			device = append(device, iss)
			names = append(names, iss.Name)
		}
	}
	agents := "agents pass a token with --token-file FILE or --token-env VAR"
	if name != "" {
		for _, iss := range issuers {
			if iss.Name != name {
				continue
			}
			if iss.DeviceClientID == "" {
				return iss, withHint(fmt.Errorf("identity provider %q offers no device login", name), agents)
			}
			return iss, nil
		}
		if len(names) == 0 {
			return certauth.IssuerInfo{}, withHint(fmt.Errorf("the bastion has no identity provider %q, and none for device login", name), agents)
		}
		return certauth.IssuerInfo{}, withHint(fmt.Errorf("the bastion has no identity provider %q", name),
			"device login is offered with: "+strings.Join(names, ", "))
	}
	switch len(device) {
	case 0:
		return certauth.IssuerInfo{}, withHint(errors.New("the bastion offers no identity provider for device login"), agents)
	case 1:
		return device[0], nil
	}
	return certauth.IssuerInfo{}, withHint(fmt.Errorf("the bastion offers device login with %d identity providers", len(device)),
		"choose one with --issuer NAME: "+strings.Join(names, ", "))
}

// loginReadTokenFile reads a token from path. It is called for every
// certificate: Kubernetes and SPIFFE agents rotate it.
func loginReadTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, loginMaxToken+1))
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if len(b) > loginMaxToken {
		return "", fmt.Errorf("token file %s is larger than %d KiB: not a token", path, loginMaxToken>>10)
	}
	return loginCleanToken(string(b), "token file "+path)
}

// loginCleanToken trims what surrounds a token and refuses what cannot be
// one. Its errors never quote the token.
func loginCleanToken(s, what string) (string, error) {
	t := strings.TrimSpace(s)
	switch {
	case t == "":
		return "", fmt.Errorf("%s is empty", what)
	case len(t) > loginMaxToken:
		return "", fmt.Errorf("%s is larger than %d KiB: not a token", what, loginMaxToken>>10)
	case strings.ContainsFunc(t, func(r rune) bool { return r <= ' ' || r >= 0x7f }):
		return "", fmt.Errorf("%s holds more than one token: it has spaces, line breaks or characters no token has", what)
	}
	return t, nil
}

// loginKey returns the key at path, used as it is, or a new Ed25519 key
// written there if there is none; created says which.
func loginKey(path string) (signer ssh.Signer, created bool, err error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s, err := loginCreateKey(path)
		return s, err == nil, err
	case err != nil:
		return nil, false, err
	case !fi.Mode().IsRegular():
		return nil, false, fmt.Errorf("private key %s is not a regular file", path)
	case fi.Mode().Perm()&0o077 != 0:
		return nil, false, withHint(fmt.Errorf("private key %s is open to others (mode %04o): refusing to use it", path, fi.Mode().Perm()),
			"chmod 600 "+termtext.ShellJoin([]string{path}))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false, err
	}
	s, err := ssh.ParsePrivateKey(b)
	var pme *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &pme):
		return nil, false, withHint(fmt.Errorf("private key %s has a passphrase", path),
			"login needs a key without one; pass --key with a path where no key exists yet and login makes one")
	case err != nil:
		return nil, false, fmt.Errorf("private key %s: %w", path, err)
	}
	return s, false, nil
}

// loginCreateKey makes an Ed25519 key at path (0600, in OpenSSH format),
// its directory if missing (0700), and path.pub (0644). It never replaces
// an existing private key.
func loginCreateKey(path string) (ssh.Signer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	const comment = "bastion login"
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create private key: %w", err)
	}
	_, err = f.Write(pem.EncodeToMemory(block))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("write private key %s: %w", path, err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey()))) + " " + comment + "\n"
	if err := storage.WriteFileAtomic(path+".pub", []byte(pub), 0o644); err != nil {
		return nil, fmt.Errorf("write public key: %w", err)
	}
	return s, nil
}

// A loginResult is one certificate obtained and installed.
type loginResult struct {
	resp       *certauth.CertificateResponse
	received   time.Time
	hostsAdded int // lines added to known_hosts
}

// obtain gets a certificate with a fresh token, writes it next to the key
// and adds the known_hosts lines that came with it.
func (l *loginClient) obtain(ctx context.Context) (*loginResult, error) {
	tok, err := l.token(ctx)
	if err != nil {
		return nil, err
	}
	req := certauth.CertificateRequest{
		PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(l.signer.PublicKey()))),
		Logins:    l.o.logins,
		Ticket:    l.o.ticket,
	}
	if l.o.ttl > 0 {
		req.TTL = l.o.ttl.String()
	}
	resp, err := l.api.Certificate(ctx, tok, req)
	if err != nil {
		return nil, loginExplain(err)
	}
	r := &loginResult{resp: resp, received: time.Now()}
	if err := storage.WriteFileAtomic(l.certPath, []byte(resp.Certificate+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write the certificate: %w", err)
	}
	if r.hostsAdded, err = addKnownHosts(l.knownHosts, resp.KnownHosts); err != nil {
		return nil, fmt.Errorf("update %s: %w", l.knownHosts, err)
	}
	return r, nil
}

// loginExplain adds what to do next to the errors a user can act on.
func loginExplain(err error) error {
	var pe *apiclient.PinError
	var ue *apiclient.UntrustedServerError
	var ae *apiclient.APIError
	switch {
	case errors.As(err, &pe):
		return withHint(err, `if the bastion's TLS certificate was replaced, get the new fingerprint from its operators ("bastion serve" prints it); if not, someone may be intercepting the connection`)
	case errors.As(err, &ue):
		return withHint(err, `if the bastion uses the self-signed certificate "bastion serve" makes, check that this is the fingerprint it printed and pass it with --ca-fingerprint`)
	case errors.Is(err, apiclient.ErrMalformedResponse):
		return withHint(err, "the server at --server may not be a bastion, or one of an incompatible version")
	case !errors.As(err, &ae):
		return err
	}
	switch {
	case ae.Reason == events.ReasonDenied:
		return withHint(err, `no rule grants you what you asked for; ask for access with "bastion grants request"`)
	case ae.Reason == events.ReasonRateLimited:
		return withHint(err, "too many requests: wait a little and try again")
	case ae.Reason == events.ReasonIdentityRevoked:
		return withHint(err, "your identity's certificates were revoked; ask the bastion's operators")
	case ae.Reason == events.ReasonTokenExpired || ae.Reason == events.ReasonTokenTooOld:
		return withHint(err, "get a fresh token and try again (--token-file is read again for every certificate)")
	case ae.Reason == events.ReasonWrongAudience:
		return withHint(err, "the token must be issued for an audience the bastion accepts for its identity provider (for a CI job, the aud of its ID token)")
	case ae.Reason == events.ReasonIssuerUnknown:
		return withHint(err, "the bastion does not trust the identity provider that issued the token")
	case strings.HasPrefix(ae.Reason, "token_") || ae.Status == http.StatusUnauthorized:
		return withHint(err, "the bastion wants an unexpired OpenID Connect token from an identity provider it trusts, for its audience")
	case strings.HasPrefix(ae.Reason, "key_"):
		return withHint(err, "pass --key with a path where no key exists yet, and login makes an Ed25519 key there")
	case ae.Status >= 500:
		return withHint(err, "the bastion could not serve the request; try again later")
	}
	return err
}

// addKnownHosts adds to the known_hosts file at path each of lines it
// does not have yet (compared with spaces normalized), keeps the rest of
// the file as it is, and returns how many it added. The file is replaced
// atomically, and only if something was added; a symlink is followed, so
// that the file it points to is the one updated.
func addKnownHosts(path string, lines []string) (int, error) {
	target := path
	if real, err := filepath.EvalSymlinks(path); err == nil {
		target = real
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	old, err := os.ReadFile(target)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	perm := os.FileMode(0o644)
	if fi, err := os.Stat(target); err == nil {
		perm = fi.Mode().Perm()
	}
	have := map[string]bool{}
	for l := range strings.Lines(string(old)) {
		have[strings.Join(strings.Fields(l), " ")] = true
	}
	var add []string
	for _, l := range lines {
		n := strings.Join(strings.Fields(l), " ")
		if n == "" || have[n] {
			continue
		}
		have[n] = true
		add = append(add, n)
	}
	if len(add) == 0 {
		return 0, nil
	}
	data := old
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	data = append(data, strings.Join(add, "\n")+"\n"...)
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return 0, err
	}
	return len(add), storage.WriteFileAtomic(target, data, perm)
}

// loginJSON is the --json output, one object per certificate. Fields are
// only ever added.
type loginJSON struct {
	CertificateFile string    `json:"certificate_file"`
	KeyFile         string    `json:"key_file"`
	KeyCreated      bool      `json:"key_created"`
	Serial          uint64    `json:"serial"`
	KeyID           string    `json:"key_id"`
	Identity        string    `json:"identity"`
	Principals      []string  `json:"principals"`
	ValidAfter      time.Time `json:"valid_after"`
	ValidBefore     time.Time `json:"valid_before"`
	Rule            string    `json:"rule"`
	KnownHostsFile  string    `json:"known_hosts_file"`
	KnownHostsAdded int       `json:"known_hosts_added"`
	SSHCommand      string    `json:"ssh_command"`
	ProfileFile     string    `json:"profile_file"`
}

func (l *loginClient) jsonOf(r *loginResult) loginJSON {
	principals := r.resp.Principals
	if principals == nil {
		principals = []string{}
	}
	return loginJSON{
		CertificateFile: l.certPath,
		KeyFile:         l.keyPath,
		KeyCreated:      l.keyCreated,
		Serial:          r.resp.Serial,
		KeyID:           r.resp.KeyID,
		Identity:        r.resp.Identity,
		Principals:      principals,
		ValidAfter:      r.resp.ValidAfter.UTC(),
		ValidBefore:     r.resp.ValidBefore.UTC(),
		Rule:            r.resp.Rule,
		KnownHostsFile:  l.knownHosts,
		KnownHostsAdded: r.hostsAdded,
		SSHCommand:      l.sshCommand(r.resp),
		ProfileFile:     l.profileFile,
	}
}

func (l *loginClient) printSummary(r *loginResult) {
	w, resp := l.e.stdout, r.resp
	fmt.Fprintf(w, "certificate for %s", termtext.Line(resp.Identity))
	if resp.Rule != "" {
		fmt.Fprintf(w, ", granted by rule %s", termtext.Line(resp.Rule))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  principals:   %s\n", termtext.Line(strings.Join(resp.Principals, ", ")))
	fmt.Fprintf(w, "  serial:       %d\n", resp.Serial)
	fmt.Fprintf(w, "  key id:       %s\n", termtext.Line(resp.KeyID))
	fmt.Fprintf(w, "  valid until:  %s (%s from now)\n", resp.ValidBefore.UTC().Format(time.RFC3339), time.Until(resp.ValidBefore).Round(time.Second))
	created := ""
	if l.keyCreated {
		created = " (new)"
	}
	fmt.Fprintf(w, "  key:          %s%s\n", l.keyPath, created)
	fmt.Fprintf(w, "  certificate:  %s\n", l.certPath)
	switch r.hostsAdded {
	case 0:
		fmt.Fprintf(w, "  known hosts:  %s (up to date)\n", l.knownHosts)
	case 1:
		fmt.Fprintf(w, "  known hosts:  %s (1 line added)\n", l.knownHosts)
	default:
		fmt.Fprintf(w, "  known hosts:  %s (%d lines added)\n", l.knownHosts, r.hostsAdded)
	}
	if l.profileFile != "" {
		fmt.Fprintf(w, "  profile:      %s (grants, status and login use it)\n", l.profileFile)
	}
	if cmd := l.sshCommand(resp); cmd != "" {
		fmt.Fprintf(w, "\nconnect with, TARGET being the host to reach:\n  %s\n", cmd)
	}
}

// sshCommand returns the ssh command line that reaches a target through
// the bastion with this certificate, TARGET standing for the target
// ("ssh LOGIN@TARGET@BASTION": OpenSSH splits the user from the host at the
// last "@"), or "" if the bastion runs no SSH listener.
func (l *loginClient) sshCommand(resp *certauth.CertificateResponse) string {
	host, port, err := net.SplitHostPort(resp.SSHAddress)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = l.serverHost // a listener on every address: reach it by the API's name
	}
	login := "LOGIN"
	switch {
	case len(l.o.logins) > 0:
		login = l.o.logins[0]
	case len(resp.Principals) > 0:
		login = resp.Principals[0]
	}
	argv := []string{"ssh", "-i", l.keyPath}
	if l.customKnownHosts {
		argv = append(argv, "-o", "UserKnownHostsFile="+l.knownHosts)
	}
	if port != "22" {
		argv = append(argv, "-p", port)
	}
	return termtext.ShellJoin(append(argv, login+"@TARGET@"+host))
}

// renew keeps the certificate fresh until ctx is done; see loginUsage.
func (l *loginClient) renew(ctx context.Context, cur *loginResult) error {
	for {
		at := loginRenewAt(cur.received, cur.resp.ValidBefore, l.o.renewBefore)
		l.logf("next renewal at %s (the certificate is valid until %s)", at.UTC().Format(time.RFC3339), cur.resp.ValidBefore.UTC().Format(time.RFC3339))
		if !loginSleep(ctx, time.Until(at)) {
			return l.stopped(cur)
		}
		b := newLoginBackoff(cur.resp.ValidBefore.Sub(cur.received))
		for {
			next, err := l.obtain(ctx)
			if err == nil {
				cur = next
				l.logf("renewed the certificate: serial %d, valid until %s", cur.resp.Serial, cur.resp.ValidBefore.UTC().Format(time.RFC3339))
				if l.o.asJSON {
					json.NewEncoder(l.e.stdout).Encode(l.jsonOf(cur))
				}
				break
			}
			if ctx.Err() != nil {
				return l.stopped(cur)
			}
			wait := b.next()
			fmt.Fprintf(l.e.stderr, "bastion: error: renewal failed: %s\n", messageText(err.Error()))
			for _, h := range hints(err) {
				fmt.Fprintf(l.e.stderr, "bastion: hint: %s\n", messageText(h))
			}
			if left := time.Until(cur.resp.ValidBefore); left > 0 {
				l.logf("the certificate %s expires in %s; retrying in %s", l.certPath, loginRound(left), loginRound(wait))
			} else {
				l.logf("the certificate %s EXPIRED at %s: ssh is refused until a renewal succeeds; retrying in %s",
					l.certPath, cur.resp.ValidBefore.UTC().Format(time.RFC3339), loginRound(wait))
			}
			if !loginSleep(ctx, wait) {
				return l.stopped(cur)
			}
		}
	}
}

func (l *loginClient) stopped(cur *loginResult) error {
	l.logf("stopped; the certificate %s stays valid until %s", l.certPath, cur.resp.ValidBefore.UTC().Format(time.RFC3339))
	return nil
}

func (l *loginClient) logf(format string, a ...any) {
	fmt.Fprintf(l.e.stderr, "bastion: "+format+"\n", a...)
}

// loginRenewAt returns when to renew a certificate received at got and
// valid until validBefore: once two thirds of what was left of its
// lifetime at receipt have passed (the certificate's own ValidAfter may be
// backdated for clock skew, so it is not the start), or renewBefore ahead
// of its end. It is never sooner than a tenth of that lifetime after
// receipt, so a --renew-before longer than the lifetime cannot make it
// renew in a tight loop.
func loginRenewAt(got, validBefore time.Time, renewBefore time.Duration) time.Time {
	life := validBefore.Sub(got)
	if life <= 0 {
		return got
	}
	at := got.Add(life * 2 / 3)
	if renewBefore > 0 {
		at = validBefore.Add(-renewBefore)
	}
	if earliest := got.Add(life / 10); at.Before(earliest) {
		at = earliest
	}
	return at
}

// loginBackoff spaces retries of a failed renewal: from one second,
// doubling, up to a sixth of the certificate's lifetime (so several tries
// fit in the last third) but at most five minutes, each wait jittered
// down by up to half, so that many agents do not retry in step.
type loginBackoff struct{ wait, ceiling time.Duration }

func newLoginBackoff(life time.Duration) *loginBackoff {
	ceiling := max(time.Second, min(5*time.Minute, life/6))
	return &loginBackoff{wait: time.Second, ceiling: ceiling}
}

func (b *loginBackoff) next() time.Duration {
	d := min(b.wait, b.ceiling)
	b.wait = 2 * d
	return d/2 + mathrand.N(d/2+1)
}

// loginRound rounds a duration for a log line: to the second, or to a
// tenth of one below ten seconds.
func loginRound(d time.Duration) time.Duration {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// loginSleep waits for d, or until ctx is done; it reports whether the
// wait ran its course.
func loginSleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
