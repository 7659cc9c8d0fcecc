package front

import (
	"container/list"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gl "github.com/gliderlabs/ssh"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion/tick"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// HostKeyFile is the SSH front door's host key inside the home directory.
const HostKeyFile = "ssh_host_ed25519_key"

// HostKeyFileECDSA is the front door's ECDSA P-256 host key, presented
// instead of the ed25519 one in FIPS mode.
const HostKeyFileECDSA = "ssh_host_ecdsa_key"

const (
	// hostCertTTL is how long a host certificate is valid; it is renewed
	// when less than half is left.
	hostCertTTL      = 24 * time.Hour
	hostCertBackdate = 5 * time.Minute
	// sourceAddressOption is the certificate critical option that pins
	// the client's address.
	sourceAddressOption = "source-address"
)

// Options are what the front door is built from.
type Options struct {
	Config      *Config
	Targets     []Target
	Home        string
	Authorities *certauth.Authorities
	Registry    *certauth.Registry
	// Journal records the sessions and the front door's events.
	Journal Journal
	Logger  hclog.Logger
	Now     func() time.Time
	// Sessions tracks the live sessions and their limits; nil gets one
	// with the default limits.
	Sessions *Sessions
	// Metrics counts connections, authentications, sessions and bytes;
	// nil counts nothing.
	Metrics Metrics
	// Policy returns the policy in force (reloads swap it); nil denies
	// every target.
	Policy func() *policy.Policy
	// Grants returns an identity's active just-in-time grants.
	Grants func(identity string, now time.Time) []policy.Grant
}

// Journal is what the front door records to: the journal in force, which
// the server may swap for a reopened one after a fault.
type Journal interface {
	// Err is the journal's fault, if it has one: no session starts then.
	Err() error
	StartSession(ctx context.Context, info recorder.SessionInfo) (*recorder.Session, error)
	AppendEvent(ctx context.Context, name string, attrs recorder.Attrs) (int64, error)
}

// Metrics counts what the front door does. Label values are only fixed
// reasons and results, never identities, addresses, logins or serials.
// The methods are called from many goroutines, some on the session
// pumps' path (Recorded).
type Metrics interface {
	ConnOpened()
	ConnClosed()
	ConnRefused(reason string)
	AuthAccepted()
	AuthRefused(reason string)
	// JournalEvent counts an event the front door appended, committed
	// or failed.
	JournalEvent(committed bool)
	SessionStarted(request string)
	SessionEnded(reason string)
	Decided(action string, allow bool)
	// Recorded counts n bytes of kind recorded and forwarded.
	Recorded(kind recorder.Kind, n int)
}

// noMetrics counts nothing.
type noMetrics struct{}

func (noMetrics) ConnOpened()                 {}
func (noMetrics) ConnClosed()                 {}
func (noMetrics) ConnRefused(string)          {}
func (noMetrics) AuthAccepted()               {}
func (noMetrics) AuthRefused(string)          {}
func (noMetrics) JournalEvent(bool)           {}
func (noMetrics) SessionStarted(string)       {}
func (noMetrics) SessionEnded(string)         {}
func (noMetrics) Decided(string, bool)        {}
func (noMetrics) Recorded(recorder.Kind, int) {}

// Front is the SSH front door: host identity, certificate authentication,
// routing by user name and local command sessions.
type Front struct {
	opts Options
	log  hclog.Logger
	now  func() time.Time
	// targets are the targets in force; a reload swaps the whole set,
	// and a connection keeps the set it resolved its target in.
	targets   atomic.Pointer[TargetSet]
	hostKey   ssh.Signer
	hostNames []string
	ln        net.Listener
	srv       *gl.Server

	// hostCertMu guards hostCertEnd, set by renewHostCert.
	hostCertMu  sync.Mutex
	hostCertEnd time.Time

	// sessions counts the session handlers running; shutdown waits
	// for them so that each records its end before the journal closes.
	sessions sync.WaitGroup
	closeMu  sync.Mutex
	closing  bool // guarded by closeMu: no new session may start

	// jumpHosts are the host certificates presented under ssh -J, one
	// per target name.
	jumpHosts jumpHostCerts

	// lives are the live sessions, ended by their limits, revocation,
	// kill or shutdown.
	lives *Sessions

	// authBudget bounds the ssh.auth_refused events strangers cost.
	authBudget *refusalBudget
	// preAuths are the connections whose pre-auth accounting is not
	// written yet.
	preAuths sync.WaitGroup

	metrics Metrics
	// maskers are the masking profiles compiled so far.
	maskers maskers
	// conns bounds the connections per client address and journals
	// the refusals.
	conns *connLimiter
}

// New loads (or creates) the host key, certifies it and opens the
// listener. Serve runs it; Close closes the listener of one that will not
// be served.
func New(opts Options) (*Front, error) {
	f := &Front{opts: opts, log: opts.Logger, now: opts.Now, lives: opts.Sessions, metrics: opts.Metrics}
	if f.log == nil {
		f.log = hclog.NewNullLogger()
	}
	if f.lives == nil {
		f.lives = NewSessions(Limits{}, f.now)
	}
	if f.metrics == nil {
		f.metrics = noMetrics{}
	}
	set, err := f.LoadTargets(opts.Targets)
	if err != nil {
		return nil, err
	}
	f.targets.Store(set)
	if opts.Config.FIPS {
		f.hostKey, err = loadHostKey(filepath.Join(opts.Home, HostKeyFileECDSA), newECDSAKey)
		if err == nil {
			for _, ca := range []struct {
				name string
				a    *certauth.Authority
			}{{"user", opts.Authorities.User}, {"host", opts.Authorities.Host}} {
				if k := ca.a.Signer.PublicKey(); !slices.Contains(fipsSignatureFormats, k.Type()) {
					f.log.Warn("FIPS mode: the "+ca.name+" CA key is not FIPS-approved; create the CAs with an ECDSA key", "key", k.Type())
				}
			}
		}
	} else {
		f.hostKey, err = loadHostKey(filepath.Join(opts.Home, HostKeyFile), newEd25519Key)
	}
	if err != nil {
		return nil, err
	}
	f.hostNames = opts.Config.HostCertNames()
	if len(f.hostNames) == 0 {
		return nil, errors.New("ssh: no host name for the host certificate: set host_names in the ssh block")
	}
	f.srv = &gl.Server{
		PublicKeyHandler:     f.precheck,
		ServerConfigCallback: f.serverConfig,
		ConnCallback:         f.preAuthStart,
		ConnectionFailedCallback: func(c net.Conn, err error) {
			f.log.Debug("ssh connection failed", "client", c.RemoteAddr().String(), "error", err)
		},
		ChannelHandlers: map[string]gl.ChannelHandler{
			"session":      f.handleSessionOrJump,
			"direct-tcpip": f.handleJump,
			"default":      refuseChannel,
		},
		// No request handlers: tcpip-forward and every other global
		// request is refused.
		// Remote port forwarding is refused, and journaled; other global
		// requests (keepalives) are refused without a record.
		RequestHandlers: map[string]gl.RequestHandler{
			"tcpip-forward":                   f.refuseForward,
			"streamlocal-forward@openssh.com": f.refuseForward,
		},
	}
	if err := f.renewHostCert(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Config.Listen)
	if err != nil {
		return nil, fmt.Errorf("SSH listener: %w", err)
	}
	f.conns = newConnLimiter(ln, opts.Config.MaxConnsPerAddress, f.journalConnRefused, f.metrics, f.now)
	f.conns.maxUnauth = opts.Config.MaxUnauthenticated
	if f.conns.maxUnauth <= 0 {
		f.conns.maxUnauth = DefaultMaxUnauthenticated
	}
	f.authBudget = newRefusalBudget(maxAuthRefusedEvents, authRefusedPerAddress)
	f.ln = f.conns
	return f, nil
}

// Addr is the address the front door listens on.
func (f *Front) Addr() net.Addr { return f.ln.Addr() }

// Close closes the listener: Serve returns, or will return at once.
func (f *Front) Close() error { return f.ln.Close() }

// Serve accepts connections until Shutdown, and renews the host
// certificate while it does.
func (f *Front) Serve(ctx context.Context) error {
	go tick.Every(ctx, time.Hour, nil, func() {
		f.hostCertMu.Lock()
		due := f.now().After(f.hostCertEnd.Add(-hostCertTTL / 2))
		f.hostCertMu.Unlock()
		if due {
			if err := f.renewHostCert(); err != nil {
				f.log.Error("renew the SSH host certificate", "error", err)
			}
		}
	})
	// Tracked with the journal writes: shutdown waits for it (ctx is
	// done by then) before the journal closes.
	f.conns.writes.Go(func() {
		tick.Every(ctx, connRefusedInterval, nil, func() {
			f.conns.flush()
			f.flushAuthRefusals()
		})
	})
	err := f.srv.Serve(f.ln)
	if errors.Is(err, gl.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting and waits for the session handlers to record
// their end (the lifecycle has ended their sessions), then closes every
// connection, held by its client or not. If ctx is done first, the
// connections are closed then, which hangs the sessions' commands up.
func (f *Front) Shutdown(ctx context.Context) error {
	// No session handler starts from here on, so the wait below ends.
	f.closeMu.Lock()
	f.closing = true
	f.closeMu.Unlock()
	// Stop accepting; connections stay open while their sessions record
	// their end and tell their clients why.
	gctx, cancel := context.WithCancel(ctx)
	graceful := make(chan struct{})
	go func() {
		f.srv.Shutdown(gctx)
		close(graceful)
	}()
	ended := make(chan struct{})
	go func() {
		f.sessions.Wait()
		close(ended)
	}()
	select {
	case <-ended:
		// Every session's end leaf is committed: a connection a client
		// still holds has nothing left to record, so it is closed rather
		// than waited for.
	case <-graceful:
	case <-ctx.Done():
		// Sessions still running past the deadline: closing their
		// connections hangs their commands up.
	}
	f.srv.Close()
	cancel()
	<-graceful
	// The connections' handlers return (each writes what its pre-auth
	// accounting owes) within what is left of the bound.
	f.srv.Shutdown(ctx)
	<-ended
	// gliderlabs tracks a connection only once it has authenticated:
	// those that have not are closed here, and their accounting written
	// while the journal is open.
	f.conns.closeUnauthenticated()
	waitOrDone(ctx, &f.preAuths)
	f.conns.flush()
	f.flushAuthRefusals()
	f.conns.writes.Wait()
	return nil
}

// renewHostCert certifies the host key for the host names with the host
// CA, for hostCertTTL, and presents it from the next connection on.
func (f *Front) renewHostCert() error {
	now := f.now()
	var serial [8]byte
	if _, err := rand.Read(serial[:]); err != nil {
		return err
	}
	cert := &ssh.Certificate{
		Key:             f.hostKey.PublicKey(),
		Serial:          binary.BigEndian.Uint64(serial[:]),
		CertType:        ssh.HostCert,
		KeyId:           "bastion host " + f.hostNames[0],
		ValidPrincipals: f.hostNames,
		ValidAfter:      uint64(now.Add(-hostCertBackdate).Unix()),
		ValidBefore:     uint64(now.Add(hostCertTTL).Unix()),
	}
	if err := f.opts.Authorities.Host.Sign(cert); err != nil {
		return fmt.Errorf("ssh: sign the host certificate: %w", err)
	}
	signer, err := ssh.NewCertSigner(cert, f.hostKey)
	if err != nil {
		return fmt.Errorf("ssh: host certificate: %w", err)
	}
	f.srv.AddHostKey(signer)
	f.hostCertMu.Lock()
	f.hostCertEnd = now.Add(hostCertTTL)
	f.hostCertMu.Unlock()
	return nil
}

func newEd25519Key() (crypto.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

func newECDSAKey() (crypto.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// loadHostKey reads the host key at path, creating it (0600) with
// generate the first time.
func loadHostKey(path string, generate func() (crypto.PrivateKey, error)) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		priv, gerr := generate()
		if gerr != nil {
			return nil, gerr
		}
		block, gerr := ssh.MarshalPrivateKey(priv, "bastion-ssh-host")
		if gerr != nil {
			return nil, gerr
		}
		b = pem.EncodeToMemory(block)
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return nil, fmt.Errorf("ssh: write host key: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			os.Remove(tmp)
			return nil, fmt.Errorf("ssh: write host key: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("ssh: read host key: %w", err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("ssh: host key %s is readable by others (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("ssh: host key %s: %w", path, err)
	}
	return signer, nil
}

// serverConfig is x/crypto's configuration for one connection: modern
// algorithms only, public keys only, the real authorization decision on
// the key the client proved it holds.
func (f *Front) serverConfig(ctx gl.Context) *ssh.ServerConfig {
	algos := algorithms(f.opts.Config.FIPS)
	return &ssh.ServerConfig{
		Config:                  algos.config(),
		PublicKeyAuthAlgorithms: algos.UserKeyAlgos,
		MaxAuthTries:            f.opts.Config.MaxAuthTries,
		ServerVersion:           "SSH-2.0-bastion",
		VerifiedPublicKeyCallback: func(conn ssh.ConnMetadata, key ssh.PublicKey, _ *ssh.Permissions, _ string) (*ssh.Permissions, error) {
			pa := preAuthOf(ctx)
			pa.prove()
			perms, err := f.authorize(conn, key, pa)
			if err == nil {
				f.metrics.AuthAccepted()
				pa.accepted()
			}
			return perms, err
		},
	}
}

// refusal is an authentication refused, with the reason journaled.
type refusal struct {
	reason, detail string
}

func (r *refusal) Error() string {
	if r.detail == "" {
		return "ssh: authentication refused: " + r.reason
	}
	return "ssh: authentication refused: " + r.reason + ": " + r.detail
}

// precheck is gliderlabs' public key handler, called for keys merely
// offered: it only tells the client whether a key is worth proving (a
// certificate from a trusted user CA). It authorizes nothing; authorize
// does, once the client has proved it holds the key. Each distinct key is
// one of the connection's max_auth_tries; past them, the connection is
// closed. Refusals are the connection's pre-auth accounting's to journal.
func (f *Front) precheck(ctx gl.Context, key gl.PublicKey) bool {
	pa := preAuthOf(ctx)
	if !pa.offer(ctx.User(), key, f.opts.Config.MaxAuthTries) {
		return false
	}
	if r := f.offerRefusal(key); r != nil {
		pa.refuse(key, r, false)
		return false
	}
	pa.worthProving(key)
	return true
}

// offerRefusal says why a key merely offered is not worth proving: it is
// not a certificate from a trusted user CA key. Nil means it may be.
func (f *Front) offerRefusal(key ssh.PublicKey) *refusal {
	cert, ok := key.(*ssh.Certificate)
	switch {
	case !ok:
		return &refusal{reason: events.ReasonNotCertificate, detail: "only certificates from the user CA are accepted"}
	case !f.opts.Authorities.User.Trusts(cert.SignatureKey, f.now()):
		return &refusal{reason: events.ReasonUntrustedCA}
	case !signedBy(cert):
		// The CA's public key is public: a certificate that names it
		// without its signature is a stranger's, and is refused here,
		// within the stranger's budget.
		return &refusal{reason: events.ReasonUntrustedCA, detail: "the certificate's signature is not its CA's"}
	}
	return nil
}

// signedBy reports whether cert's signature is its signature key's over
// the certificate (the bytes RFC PROTOCOL.certkeys signs: everything but
// the signature itself).
func signedBy(cert *ssh.Certificate) bool {
	if cert.Signature == nil || cert.SignatureKey == nil {
		return false
	}
	c := *cert
	c.Signature = nil
	b := c.Marshal()
	// Marshal ends with the (now empty) signature's 4-byte length.
	return len(b) >= 4 && cert.SignatureKey.Verify(b[:len(b)-4], cert.Signature) == nil
}

// refuseForward refuses a remote port forwarding request (ssh -R), and
// journals it.
func (f *Front) refuseForward(ctx gl.Context, _ *gl.Server, req *ssh.Request) (bool, []byte) {
	var info *authInfo
	if sc, ok := ctx.Value(gl.ContextKeyConn).(*ssh.ServerConn); ok && sc.Permissions != nil {
		info, _ = sc.Permissions.ExtraData[authInfoKey{}].(*authInfo)
	}
	f.requestRefused(info, ctx.User(), req.Type, "remote_forwarding_refused")
	return false, nil
}

// authInfo is who an authenticated connection is and where it goes; it
// rides in the connection's Permissions.ExtraData.
type authInfo struct {
	cert  *ssh.Certificate
	login string
	// target is where the connection's sessions run; its Name is "" for
	// the outer connection of ssh -J (user name LOGIN alone), which may
	// open direct-tcpip channels to targets and nothing else.
	target Target
	// targets are the targets in force when the connection authenticated:
	// its sessions keep them (and their upstreams) across a reload.
	targets  *TargetSet
	identity string
	// who is the identity as policy sees it: the provider, subject and
	// token claims the certificate was issued on.
	who    *policy.Identity
	serial uint64
	// client is the address of the client's TCP connection to the
	// bastion (under ssh -J, the outer connection's).
	client string
	// route is how the connection reached its target: RouteUser,
	// RouteJump, or "" for the outer connection of ssh -J.
	route string
}

// Routes, as journaled.
const (
	RouteUser = "user" // ssh LOGIN@TARGET@bastion
	RouteJump = "jump" // ssh -J bastion LOGIN@TARGET
)

type authInfoKey struct{}

// authorize makes the authentication decision on a key the client proved
// it holds: a user certificate from the user CA, valid now, not revoked,
// with no critical option but a source-address that matches, for a
// configured target, naming the requested login as a principal.
//
// A refusal goes to the connection's pre-auth accounting, pa.
func (f *Front) authorize(conn ssh.ConnMetadata, key ssh.PublicKey, pa *preAuth) (*ssh.Permissions, error) {
	info, r := f.check(conn, key)
	if r != nil {
		pa.refuse(key, r, true)
		return nil, r
	}
	return &ssh.Permissions{
		// x/crypto checks source-address again on these.
		CriticalOptions: info.cert.CriticalOptions,
		Extensions:      info.cert.Extensions,
		ExtraData:       map[any]any{authInfoKey{}: info},
	}, nil
}

// check is checkAs for the user name of a connection to the bastion:
// LOGIN@TARGET, or LOGIN alone for the outer connection of ssh -J.
func (f *Front) check(conn ssh.ConnMetadata, key ssh.PublicKey) (*authInfo, *refusal) {
	return f.checkAs(conn, key, f.targets.Load(), f.resolveUser)
}

// resolveUser reads a user name: LOGIN@TARGET for a configured target,
// or LOGIN alone (no '@'), which routes nowhere but lets the connection
// jump (ssh -J) to targets.
func (f *Front) resolveUser(set *TargetSet, user string) (login string, t Target, route string, r *refusal) {
	if !strings.Contains(user, "@") {
		return user, Target{}, "", nil
	}
	login, target, ok := splitUser(user)
	if !ok {
		return "", Target{}, "", &refusal{reason: events.ReasonNoTarget, detail: "the user name is not LOGIN@TARGET"}
	}
	t, ok = set.byName[target]
	if !ok {
		return "", Target{}, "", &refusal{reason: events.ReasonUnknownTarget, detail: target}
	}
	return login, t, RouteUser, nil
}

// checkAs checks a certificate: every check but the user name's, which
// resolve turns into the login (a principal the certificate must name),
// the target (in set, the targets in force) and the route.
func (f *Front) checkAs(conn ssh.ConnMetadata, key ssh.PublicKey, set *TargetSet, resolve func(set *TargetSet, user string) (login string, t Target, route string, r *refusal)) (*authInfo, *refusal) {
	now := f.now()
	cert, ok := key.(*ssh.Certificate)
	if !ok {
		return nil, &refusal{reason: events.ReasonNotCertificate}
	}
	if cert.CertType != ssh.UserCert {
		return nil, &refusal{reason: events.ReasonNotUserCert}
	}
	if !f.opts.Authorities.User.Trusts(cert.SignatureKey, now) {
		return nil, &refusal{reason: events.ReasonUntrustedCA}
	}
	if f.opts.Config.FIPS && !fipsSignature(cert) {
		return nil, &refusal{reason: events.ReasonNotFIPS, detail: "the certificate's signature is not FIPS-approved"}
	}
	for opt := range cert.CriticalOptions {
		if opt != sourceAddressOption {
			return nil, &refusal{reason: events.ReasonCriticalOption, detail: opt}
		}
	}
	if int64(cert.ValidAfter) < 0 || now.Unix() < int64(cert.ValidAfter) {
		return nil, &refusal{reason: events.ReasonNotYetValid, detail: "valid after " + time.Unix(int64(cert.ValidAfter), 0).UTC().Format(time.RFC3339)}
	}
	if cert.ValidBefore != ssh.CertTimeInfinity && (int64(cert.ValidBefore) < 0 || now.Unix() >= int64(cert.ValidBefore)) {
		return nil, &refusal{reason: events.ReasonExpired, detail: "expired " + time.Unix(int64(cert.ValidBefore), 0).UTC().Format(time.RFC3339)}
	}
	if sa, ok := cert.CriticalOptions[sourceAddressOption]; ok {
		if err := checkSourceAddress(conn.RemoteAddr(), sa); err != nil {
			return nil, &refusal{reason: events.ReasonSourceAddress, detail: err.Error()}
		}
	}
	login, t, route, r := resolve(set, conn.User())
	if r != nil {
		return nil, r
	}
	if !slices.Contains(cert.ValidPrincipals, login) {
		return nil, &refusal{reason: events.ReasonPrincipal, detail: login}
	}
	// x/crypto's own certificate check, which also verifies the CA's
	// signature on it (offerRefusal did when the key was offered; this
	// check stands on its own): before the registry is asked, so that a
	// forged certificate costs nothing more (a serial the registry does
	// not know may make it read the other cluster members' logs).
	checker := &ssh.CertChecker{SupportedCriticalOptions: []string{sourceAddressOption}, Clock: f.now}
	if err := checker.CheckCert(login, cert); err != nil {
		return nil, &refusal{reason: events.ReasonCertificateFailed, detail: err.Error()}
	}
	// The certificate must be one this bastion's journal records as
	// issued, for this key: one signed with the CA key elsewhere (a
	// stolen key, another bastion sharing the CA) is refused.
	rec, ok := f.opts.Registry.Lookup(cert.Serial)
	if !ok {
		return nil, &refusal{reason: events.ReasonUnknownSerial, detail: fmt.Sprintf("serial %d", cert.Serial)}
	}
	if rec.Revoked {
		return nil, &refusal{reason: events.ReasonRevoked}
	}
	if rec.KeyFingerprint != ssh.FingerprintSHA256(cert.Key) || !slices.Equal(rec.Principals, cert.ValidPrincipals) ||
		rec.ValidBefore.Unix() != int64(cert.ValidBefore) || rec.KeyID != cert.KeyId {
		return nil, &refusal{reason: events.ReasonKeyMismatch, detail: fmt.Sprintf("serial %d", cert.Serial)}
	}
	info := &authInfo{
		cert: cert, login: login, target: t, targets: set, serial: cert.Serial, who: rec.PolicyIdentity(),
		identity: rec.Identity, client: addrString(conn.RemoteAddr()), route: route,
	}
	// A target the identity may not reach is refused like one that does
	// not exist; the journal says which.
	if t.Name != "" {
		if d, ok := f.mayReach(info, login, t.Name); !ok {
			return nil, &refusal{reason: events.ReasonNotPermitted, detail: d.Reason + " (rule " + d.Rule + ")"}
		}
	}
	return info, nil
}

// splitUser splits an SSH user name LOGIN@TARGET at its last '@'.
func splitUser(user string) (login, target string, ok bool) {
	i := strings.LastIndexByte(user, '@')
	if i <= 0 || i == len(user)-1 {
		return "", "", false
	}
	return user[:i], user[i+1:], true
}

// checkSourceAddress reports whether addr is in the comma-separated list
// of addresses and CIDR blocks of a source-address option, as OpenSSH
// reads it.
func checkSourceAddress(addr net.Addr, list string) error {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("client address %v is not TCP", addr)
	}
	for _, s := range strings.Split(list, ",") {
		if ip := net.ParseIP(s); ip != nil {
			if ip.Equal(tcp.IP) {
				return nil
			}
			continue
		}
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return fmt.Errorf("source-address %q is not an address or CIDR block", s)
		}
		if n.Contains(tcp.IP) {
			return nil
		}
	}
	return fmt.Errorf("client address %v is not in source-address %q", tcp.IP, list)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// refusedWith journals a refused authentication (and logs it), with extra
// attributes for the journal event.
func (f *Front) refusedWith(user string, remote net.Addr, key ssh.PublicKey, r *refusal, extra recorder.Attrs) {
	attrs := recorder.Attrs{
		"reason": r.reason,
		"user":   user,
		"client": addrString(remote),
	}
	for k, v := range extra {
		attrs[k] = v
	}
	if r.detail != "" {
		attrs["detail"] = r.detail
	}
	if cert, ok := key.(*ssh.Certificate); ok {
		attrs["key.sha256"] = ssh.FingerprintSHA256(cert.Key)
		attrs["serial"] = strconv.FormatUint(cert.Serial, 10)
		attrs["ca.sha256"] = ssh.FingerprintSHA256(cert.SignatureKey)
		if r.reason != events.ReasonUntrustedCA && r.reason != events.ReasonNotUserCert {
			attrs["key-id"] = cert.KeyId
		}
	} else if key != nil {
		attrs["key.sha256"] = ssh.FingerprintSHA256(key)
	}
	f.metrics.AuthRefused(r.reason)
	f.textMasker().Fields(attrs, clientText...)
	capClientText(attrs)
	f.log.Info("ssh authentication refused", "reason", r.reason, "detail", attrs["detail"], "user", attrs["user"], "client", attrs["client"], "serial", attrs["serial"])
	f.journal(events.AuthRefused, attrs, "a refused ssh authentication")
}

// journal appends one of the front door's events, waiting at most five
// seconds, and logs a failure (what names the event for the log).
//
// What the client chose (a user name, a destination, a command, details
// that quote them) is masked first, with the policy's text_masking.
func (f *Front) journal(name string, attrs recorder.Attrs, what string) error {
	f.textMasker().Fields(attrs, clientText...)
	capClientText(attrs)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := f.opts.Journal.AppendEvent(ctx, name, attrs)
	if err != nil {
		f.log.Error("journal "+what, "error", err)
	}
	return err
}

// clientText are the attributes of the front door's events that hold text
// the client chose, masked before they are journaled or logged.
var clientText = []string{"user", "outer.user", "destination", "command", "detail", "term"}

// maxClientText bounds what the journal keeps of a piece of text a
// stranger chose (a user name, a certificate's key ID): a budgeted leaf
// must cost a bounded number of bytes too.
const maxClientText = 256

// capClientText cuts the client-chosen attributes of a (and key-id) to
// maxClientText bytes at most, at a character boundary, noting how long
// they were; a value within the bound, one cut before included, is left
// as it is.
func capClientText(a recorder.Attrs) {
	a.Cap(maxClientText, append(clientText, "key-id")...)
}

// addTo adds to attrs who the connection is: the identity, the
// certificate's serial and key ID, the client, and the route.
func (info *authInfo) addTo(attrs recorder.Attrs) recorder.Attrs {
	attrs["identity"] = info.identity
	attrs["serial"] = strconv.FormatUint(info.serial, 10)
	attrs["key-id"] = info.cert.KeyId
	attrs["client"] = info.client
	if info.route != "" {
		attrs["route"] = info.route
	}
	return attrs
}

// refuseChannel refuses every channel type but sessions and ssh -J's
// direct-tcpip to a target name (handleJump): port forwarding is not
// allowed yet.
func refuseChannel(_ *gl.Server, _ *ssh.ServerConn, nc ssh.NewChannel, _ gl.Context) {
	switch nc.ChannelType() {
	case "direct-tcpip", "direct-streamlocal@openssh.com":
		nc.Reject(ssh.Prohibited, "bastion: port forwarding is not allowed")
	default:
		nc.Reject(ssh.UnknownChannelType, "bastion: channel type "+nc.ChannelType()+" is not supported")
	}
}

// ConnEvicted is the metric's reason for a connection closed before it
// authenticated to make room under max_unauthenticated.
const ConnEvicted = "evicted_unauthenticated"

const (
	// connRefusedInterval is how often refused connections are summarized in
	// the journal.
	connRefusedInterval = time.Minute
	// maxConnRefusedEvents bounds the events journaled per interval; the
	// refusals of other addresses are summed in one more event.
	maxConnRefusedEvents = 16
)

// connKeyOf is the address connections are counted under: the IPv4
// address, or the /64 of an IPv6 one.
func connKeyOf(a net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(addrString(a))
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// connLimiter is the front door's listener: it closes, at accept, a
// connection from an address that already has max open, and counts the
// connections.
type connLimiter struct {
	net.Listener
	max     int
	journal func(attrs recorder.Attrs)
	metrics Metrics
	now     func() time.Time

	// maxUnauth bounds the connections not yet authenticated; unauth
	// holds them, oldest first.
	maxUnauth int

	mu     sync.Mutex
	open   map[netip.Prefix]int
	unauth list.List // of *limitedConn, guarded by mu
	budget *refusalBudget
	writes sync.WaitGroup
}

func newConnLimiter(ln net.Listener, max int, journal func(recorder.Attrs), m Metrics, now func() time.Time) *connLimiter {
	if max <= 0 {
		max = DefaultMaxConnsPerAddress
	}
	return &connLimiter{Listener: ln, max: max, journal: journal, metrics: m, now: now,
		open: map[netip.Prefix]int{}, budget: newRefusalBudget(maxConnRefusedEvents, 1)}
}

// Accept returns the next connection whose address is under the limit.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := connKeyOf(c.RemoteAddr())
		l.mu.Lock()
		var evict *limitedConn
		if l.open[key] >= l.max {
			// The address is at its cap: its oldest connection that has
			// not authenticated makes room, so that silent connections
			// from one address (a NAT's) cannot keep its other clients
			// out. With none, the new one is refused.
			for e := l.unauth.Front(); e != nil; e = e.Next() {
				if old := e.Value.(*limitedConn); old.key == key {
					evict = old
					break
				}
			}
			if evict == nil {
				l.mu.Unlock()
				c.Close()
				l.refuse(key)
				continue
			}
			l.unauth.Remove(evict.elem)
			evict.elem = nil
		}
		l.open[key]++
		lc := &limitedConn{Conn: withQuickAck(c), l: l, key: key}
		if evict == nil && l.maxUnauth > 0 && l.unauth.Len() >= l.maxUnauth {
			// Full of connections that have not authenticated: the
			// oldest goes, so that a flood of silent connections, from
			// however many addresses, cannot keep a client out.
			evict = l.unauth.Remove(l.unauth.Front()).(*limitedConn)
			evict.elem = nil
		}
		lc.elem = l.unauth.PushBack(lc)
		l.mu.Unlock()
		l.metrics.ConnOpened()
		if evict != nil {
			l.metrics.ConnRefused(ConnEvicted)
			evict.Close()
		}
		return lc, nil
	}
}

// closeUnauthenticated closes every connection that has not
// authenticated.
func (l *connLimiter) closeUnauthenticated() {
	l.mu.Lock()
	var open []*limitedConn
	for e := l.unauth.Front(); e != nil; e = e.Next() {
		open = append(open, e.Value.(*limitedConn))
	}
	l.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

// waitOrDone waits for wg, or until ctx is done.
func waitOrDone(ctx context.Context, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// authenticated takes c off the connections that have not authenticated.
func (c *limitedConn) authenticated() {
	c.l.mu.Lock()
	if c.elem != nil {
		c.l.unauth.Remove(c.elem)
		c.elem = nil
	}
	c.l.mu.Unlock()
}

// refuse counts a refused connection; the first one of an address in an
// interval is journaled at once, within the budget.
func (l *connLimiter) refuse(key netip.Prefix) {
	l.metrics.ConnRefused(events.ReasonTooManyConnections)
	if !l.budget.take(key, nil) {
		return
	}
	attrs := recorder.Attrs{
		"reason": events.ReasonTooManyConnections, "client": prefixString(key), "refused": "1",
		"since": l.now().UTC().Format(time.RFC3339), "limit": strconv.Itoa(l.max),
	}
	l.writes.Go(func() { l.journal(attrs) })
}

// flush journals the refusals counted and not yet journaled (at most
// maxConnRefusedEvents events, the rest summed in one), and starts a new
// interval.
func (l *connLimiter) flush() {
	for _, s := range l.budget.flush() {
		attrs := recorder.Attrs{
			"reason": events.ReasonTooManyConnections, "client": s.client, "refused": strconv.Itoa(s.count),
			"since": s.since.UTC().Format(time.RFC3339), "limit": strconv.Itoa(l.max),
		}
		if s.others > 0 {
			attrs["addresses"] = strconv.Itoa(s.others)
		}
		if s.untracked > 0 {
			attrs["untracked"] = strconv.Itoa(s.untracked)
		}
		l.journal(attrs)
	}
}

// limitedConn gives its address's slot back when closed.
type limitedConn struct {
	net.Conn
	l    *connLimiter
	key  netip.Prefix
	elem *list.Element // in l.unauth until it authenticates; guarded by l.mu
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.open[c.key]--; c.l.open[c.key] <= 0 {
			delete(c.l.open, c.key)
		}
		if c.elem != nil {
			c.l.unauth.Remove(c.elem)
			c.elem = nil
		}
		c.l.mu.Unlock()
		c.l.metrics.ConnClosed()
	})
	return c.Conn.Close()
}

// journalConnRefused journals an ssh.connection_refused event.
func (f *Front) journalConnRefused(attrs recorder.Attrs) {
	f.log.Warn("ssh connections refused: too many from one address", "client", attrs["client"], "refused", attrs["refused"], "limit", attrs["limit"])
	if err := f.journal(events.ConnRefused, attrs, "refused ssh connections"); err != nil {
		f.metrics.JournalEvent(false)
		return
	}
	f.metrics.JournalEvent(true)
}
