package front

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/bastionhq/bastion/bastion/local"
	"github.com/bastionhq/bastion/bastion/pump"
	"github.com/bastionhq/bastion/bastion/tick"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder"
)

const (
	// upstreamCertTTL is how long a certificate the bastion presents to
	// an SSH target is valid: long enough to authenticate, no longer.
	// It is backdated a little for the target's clock.
	upstreamCertTTL      = time.Minute
	upstreamCertBackdate = 30 * time.Second

	// upstreamKeepalive is how often the bastion asks an SSH target
	// whether the connection is alive; after upstreamKeepaliveMissed
	// intervals without an answer the session ends.
	upstreamKeepalive       = 30 * time.Second
	upstreamKeepaliveMissed = 3
)

// An envVar is an SSH "env" request (RFC 4254 6.4).
type envVar struct {
	Name, Value string
}

// envAllowed reports whether a client's environment variable is passed on
// to SSH targets: the locale and the terminal type (LANG, TERM, LC_ and
// capitals), nothing that could change what a program runs (PATH, LD_*,
// BASH_ENV). The names are all capitals, so the journal, whose attribute
// keys are lowercase, records them lowercased without ambiguity.
func envAllowed(name string) bool {
	return name == "LANG" || name == "TERM" || envLocale.MatchString(name)
}

var envLocale = regexp.MustCompile(`^LC_[A-Z]+$`)

// upstream is how the front door reaches one SSH target: where, which host
// keys it trusts, and the key it authenticates with.
type upstream struct {
	target Target
	now    func() time.Time
	// fips restricts the connection to FIPS 140-3 approved algorithms,
	// as the front door's own.
	fips bool
	// knownHosts checks a host key against the target's known_hosts
	// file; nil if it has none. knownHostsCA says the file has
	// @cert-authority lines.
	knownHosts   ssh.HostKeyCallback
	knownHostsCA bool
	// userKey is the configured key; nil means a per-session
	// certificate from the target CA.
	userKey ssh.Signer
}

// newUpstream loads what t's host key verification and authentication
// need from their files.
func newUpstream(t Target, now func() time.Time) (*upstream, error) {
	u := &upstream{target: t, now: now}
	if t.HostKey == nil && t.KnownHosts == "" && t.HostCA == nil {
		return nil, fmt.Errorf("target %q: nothing verifies its host key", t.Name)
	}
	if t.KnownHosts != "" {
		kh, err := readKnownHosts(t.KnownHosts)
		if err != nil {
			return nil, fmt.Errorf("target %q: known_hosts: %w", t.Name, err)
		}
		u.knownHostsCA = kh.certAuthority
		if u.knownHosts, err = knownhosts.New(t.KnownHosts); err != nil {
			return nil, fmt.Errorf("target %q: known_hosts: %w", t.Name, err)
		}
	}
	if t.UserKey != "" {
		var err error
		if u.userKey, err = loadUserKey(t.UserKey); err != nil {
			return nil, fmt.Errorf("target %q: user_key: %w", t.Name, err)
		}
	}
	return u, nil
}

// A hostKeyError is a target's host key that nothing configured trusts.
type hostKeyError struct {
	target, fingerprint string
	why                 []string
}

func (e *hostKeyError) Error() string {
	return fmt.Sprintf("target %q: host key %s is not trusted: %s", e.target, e.fingerprint, strings.Join(e.why, "; "))
}

// checkHostKey accepts a host certificate signed by the target's host_ca
// for its host name, the pinned host_key (bare or certified), or a key
// the known_hosts file accepts for the address; nothing else.
func (u *upstream) checkHostKey(hostname string, remote net.Addr, key ssh.PublicKey) error {
	e := &hostKeyError{target: u.target.Name, fingerprint: ssh.FingerprintSHA256(key)}
	cert, isCert := key.(*ssh.Certificate)
	if isCert && u.target.HostCA != nil && sameKey(cert.SignatureKey, u.target.HostCA) {
		cc := &ssh.CertChecker{
			IsHostAuthority: func(a ssh.PublicKey, _ string) bool { return sameKey(a, u.target.HostCA) },
			Clock:           u.now,
		}
		err := cc.CheckHostKey(hostname, remote, key)
		if err == nil {
			return nil
		}
		e.why = append(e.why, "host_ca: "+err.Error())
	} else if u.target.HostCA != nil {
		e.why = append(e.why, "not a certificate from host_ca")
	}
	if u.target.HostKey != nil {
		plain := key
		if isCert {
			plain = cert.Key
		}
		if sameKey(plain, u.target.HostKey) {
			return nil
		}
		e.why = append(e.why, "not the pinned host_key")
	}
	if u.knownHosts != nil {
		err := u.knownHosts(hostname, remote, key)
		if err == nil {
			return nil
		}
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) && len(ke.Want) == 0 {
			e.why = append(e.why, "known_hosts has no key for "+hostname)
		} else {
			e.why = append(e.why, "known_hosts: "+err.Error())
		}
	}
	return e
}

func sameKey(a, b ssh.PublicKey) bool {
	return bytes.Equal(a.Marshal(), b.Marshal())
}

var (
	plainHostKeyAlgos = []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	certHostKeyAlgos  = []string{ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01}
)

// hostKeyAlgorithms are the host key algorithms offered to the target, so
// that it presents a key that can be verified: certificates only where a
// host CA is configured, the pinned key's algorithm first.
func (u *upstream) hostKeyAlgorithms() []string {
	var algos []string
	if u.target.HostCA != nil || u.knownHostsCA {
		algos = append(algos, certHostKeyAlgos...)
	}
	if k := u.target.HostKey; k != nil {
		if k.Type() == ssh.KeyAlgoRSA {
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
		} else {
			algos = append(algos, k.Type())
		}
	}
	if u.knownHosts != nil {
		for _, a := range plainHostKeyAlgos {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// dial connects to the target and authenticates as user with auth, all
// within the target's dial timeout. It returns the host key the target
// presented.
func (u *upstream) dial(ctx context.Context, user string, auth ssh.Signer) (*ssh.Client, ssh.PublicKey, error) {
	timeout := u.target.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", u.target.SSH)
	if err != nil {
		return nil, nil, err
	}
	// The handshake ends at the deadline, or when ctx ends.
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	var hostKey ssh.PublicKey
	cc := &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(auth)},
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			if err := u.checkHostKey(hostname, remote, key); err != nil {
				return err
			}
			hostKey = key
			return nil
		},
		HostKeyAlgorithms: u.hostKeyAlgorithms(),
		ClientVersion:     "SSH-2.0-bastion",
	}
	if err := RestrictClientConfig(cc, u.fips); err != nil {
		c.Close()
		stop()
		return nil, nil, err
	}
	sc, chans, reqs, err := ssh.NewClientConn(withQuickAck(c), u.target.SSH, cc)
	if !stop() || err != nil {
		c.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, nil, err
	}
	c.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), hostKey, nil
}

// upstreamCert certifies a fresh ed25519 key for login with the target CA,
// valid about a minute, its key ID naming the session and the identity, so
// that the target's own log points back to the journal.
func (f *Front) upstreamCert(sessionID, identity, login string, serial uint64, extensions ...string) (ssh.Signer, *ssh.Certificate, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	key, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, err
	}
	now := f.now()
	cert := &ssh.Certificate{
		Key:             key.PublicKey(),
		Serial:          serial,
		CertType:        ssh.UserCert,
		KeyId:           fmt.Sprintf("session=%s identity=%s serial=%d", sessionID, identity, serial),
		ValidPrincipals: []string{login},
		ValidAfter:      uint64(now.Add(-upstreamCertBackdate).Unix()),
		ValidBefore:     uint64(now.Add(upstreamCertTTL).Unix()),
	}
	// Only what the session needs: a terminal if the client has one, port
	// forwarding for a forward; nothing else.
	if len(extensions) > 0 {
		cert.Extensions = map[string]string{}
		for _, e := range extensions {
			cert.Extensions[e] = ""
		}
	}
	if err := f.opts.Authorities.Target.Sign(cert); err != nil {
		return nil, nil, fmt.Errorf("sign the target certificate: %w", err)
	}
	signer, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		return nil, nil, err
	}
	return signer, cert, nil
}

func randomSerial() (uint64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b[:]), nil
}

// exitSignal is an SSH "exit-signal" payload (RFC 4254 6.10).
type exitSignal struct {
	Signal     string
	CoreDumped bool
	Message    string
	Lang       string
}

// upstreamExit is how the target said its command ended; nil fields until
// it says.
type upstreamExit struct {
	res     *local.Result
	payload []byte // the exit-signal request as the target sent it
}

// runUpstream runs a shell, exec or subsystem request on an SSH target:
// it records the session, connects as the client's login with the
// bastion's own credential (dialUpstream), pumps every byte record then
// forward (pumpUpstream), and ends the session with the target's exit
// status.
func (s *frontSession) runUpstream(ctx context.Context, kind, command string, reqs <-chan *ssh.Request) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	u := s.info.targets.upstreams[s.info.target.Name]
	attrs := s.sessionAttrs(kind, command)
	attrs["target-kind"] = "ssh"
	attrs["upstream.address"] = s.info.target.SSH
	attrs["upstream.user"] = s.info.login
	var serial uint64
	if u.userKey != nil {
		attrs["upstream.auth"] = "key"
		attrs["upstream.key.sha256"] = ssh.FingerprintSHA256(u.userKey.PublicKey())
	} else {
		var err error
		if serial, err = randomSerial(); err != nil {
			s.say("the session failed: %v", err)
			s.exit(local.Result{ExitCode: 255})
			return
		}
		attrs["upstream.auth"] = "certificate"
		attrs["upstream.serial"] = strconv.FormatUint(serial, 10)
		attrs["upstream.ca.sha256"] = ssh.FingerprintSHA256(s.f.opts.Authorities.Target.Signer.PublicKey())
	}
	sess, rec, ok := s.begin(ctx, kind, command, attrs)
	if !ok {
		return
	}
	up, failed := s.dialUpstream(ctx, sess, rec, u, serial, kind, command)
	if up == nil {
		s.end(ctx, sess, failed)
		return
	}
	defer up.close()
	s.end(ctx, sess, s.pumpUpstream(ctx, rec, up, kind, reqs))
}

// upstreamSession is a session channel open on an SSH target, with its
// command (shell, exec, subsystem) started.
type upstreamSession struct {
	client *ssh.Client
	ch     ssh.Channel
	reqs   <-chan *ssh.Request // the target's requests on ch
	// attrs are what the end leaf says of the connection: the
	// certificate's key ID, the target's host key.
	attrs recorder.Attrs
}

func (u *upstreamSession) close() {
	u.ch.Close()
	u.client.Close()
}

// dialUpstream connects to the target as the client's login, with the
// target's own key or a certificate minted for this session (recorded
// before it is used), opens a session channel and replays the client's
// requests before the start (env, pty-req) and the start itself. If any
// step fails it returns nil and the outcome that ends the session.
func (s *frontSession) dialUpstream(ctx context.Context, sess *recorder.Session, rec pump.Recorder, u *upstream, serial uint64, kind, command string) (*upstreamSession, outcome) {
	info := s.info
	attrs := recorder.Attrs{}
	failed := func(msg string, err error) (*upstreamSession, outcome) {
		return nil, outcome{err: err, attrs: attrs, failure: msg}
	}
	auth := u.userKey
	if auth == nil {
		var ext []string
		if s.pty != nil {
			ext = append(ext, policy.PermitPTY)
		}
		signer, cert, err := s.f.upstreamCert(sess.ID().String(), info.identity, info.login, serial, ext...)
		if err != nil {
			return failed("the session failed", err)
		}
		auth = signer
		attrs["upstream.key-id"] = cert.KeyId
		// The key ID names the session, which exists only now: a frame
		// records it, before the certificate is used.
		note := fmt.Sprintf("upstream certificate serial=%d key-id=%q principal=%s", serial, cert.KeyId, info.login)
		seq, err := rec.Append(recorder.KindMarker, 0, []byte(note))
		if err == nil {
			err = rec.Wait(ctx, seq)
		}
		if err != nil {
			return nil, outcome{err: pump.RecordingFailed(err)}
		}
	}

	client, hostKey, err := u.dial(ctx, info.login, auth)
	if err != nil {
		msg := "the target cannot be reached"
		var he *hostKeyError
		switch {
		case errors.As(err, &he):
			msg = "the target's host key is not trusted"
		case strings.Contains(err.Error(), "unable to authenticate"):
			msg = "the target refused the bastion's credentials"
		}
		return failed(msg, fmt.Errorf("connect to %s: %w", info.target.SSH, err))
	}
	attrs["upstream.host-key.sha256"] = ssh.FingerprintSHA256(hostKey)
	uch, ureqs, err := client.OpenChannel("session", nil)
	if err != nil {
		client.Close()
		return failed("the target refused a session", err)
	}
	up := &upstreamSession{client: client, ch: uch, reqs: ureqs, attrs: attrs}

	// The client's requests before the start, as it sent them (window
	// changes before the start are folded into the PTY request).
	for _, e := range s.env {
		if _, err := uch.SendRequest("env", false, ssh.Marshal(e)); err != nil {
			up.close()
			return failed("the connection to the target failed", err)
		}
	}
	if s.pty != nil {
		ok, err := uch.SendRequest("pty-req", true, ssh.Marshal(s.pty))
		if err != nil {
			up.close()
			return failed("the connection to the target failed", err)
		}
		if !ok {
			s.say("the target refused a terminal")
		}
	}
	var payload []byte
	switch kind {
	case "exec":
		payload = ssh.Marshal(struct{ Command string }{command})
	case "subsystem":
		payload = ssh.Marshal(struct{ Name string }{command})
	}
	if ok, err := uch.SendRequest(kind, true, payload); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%s request refused", kind)
		}
		up.close()
		return failed("the target refused the "+kind+" request", err)
	}
	return up, outcome{}
}

// pumpUpstream pumps a started upstream session record then forward (a
// subsystem's packets observed for the files that pass), mirrors the
// client's requests to the target, keeps the connection alive, and
// returns how it ended: the target's exit status or signal, or why it
// stopped.
func (s *frontSession) pumpUpstream(ctx context.Context, rec journalRecorder, up *upstreamSession, kind string, reqs <-chan *ssh.Request) outcome {
	// The target's requests: how its command ended. up.reqs closes with
	// the channel.
	var exit upstreamExit
	targetDone := make(chan struct{})
	go func() {
		defer close(targetDone)
		for r := range up.reqs {
			switch r.Type {
			case "exit-status":
				var st struct{ Status uint32 }
				if ssh.Unmarshal(r.Payload, &st) == nil {
					exit.res = &local.Result{ExitCode: int(st.Status)}
				}
			case "exit-signal":
				var es exitSignal
				if ssh.Unmarshal(r.Payload, &es) == nil {
					exit.res = &local.Result{ExitCode: 255, Signal: es.Signal}
					exit.payload = r.Payload
				}
			}
			if r.WantReply {
				r.Reply(false, nil)
			}
		}
	}()

	var prec pump.Recorder = rec
	var srec *sftpRecorder
	if kind == "subsystem" {
		srec = &sftpRecorder{rec, newSFTPObserver()}
		prec = *srec
	}
	prec = s.redacting(prec)
	uch := up.ch
	p := pump.StartPipes(ctx, prec, pump.Ends{
		Stdin: s.ch, Input: uch, EndInput: func() { uch.CloseWrite() },
		Stdout: uch, Stderr: uch.Stderr(), ToStdout: s.ch, ToStderr: s.ch.Stderr(),
		Filter: s.filter,
	}, up.close)
	done := make(chan struct{})
	defer close(done)
	go s.mirrorRequests(ctx, reqs, uch, rec, p, done)
	go keepalive(ctx, up.client, upstreamKeepalive, p.Stop)

	p.Until(p.OutputDone())
	// The output is at its end; the target's exit status comes with, or
	// before, its close of the channel.
	p.Until(targetDone)
	runErr := p.Err()
	if runErr == nil && srec != nil {
		if err := srec.finish(); err != nil {
			runErr = pump.RecordingFailed(err)
		}
	}
	return outcome{res: exit.res, signal: exit.payload, err: runErr, attrs: up.attrs}
}

// mirrorRequests passes the client's requests after the start on to the
// target: window changes and signals, each recorded first. Everything else
// is refused. If the client closes the channel, the session stops.
func (s *frontSession) mirrorRequests(ctx context.Context, reqs <-chan *ssh.Request, uch ssh.Channel, rec pump.Recorder, p *pump.Pipes, done <-chan struct{}) {
	for req := range reqs {
		select {
		case <-done:
			req.Reply(false, nil)
			continue
		default:
		}
		switch req.Type {
		case "window-change":
			var w windowChange
			if s.pty == nil || ssh.Unmarshal(req.Payload, &w) != nil {
				req.Reply(false, nil)
				continue
			}
			// In its place among the input: the target sees the new
			// size after the keystrokes recorded before it.
			payload := local.Size{Cols: int(w.Cols), Rows: int(w.Rows)}.Clamp().Payload()
			send := func() { uch.SendRequest("window-change", false, req.Payload) }
			err := p.Inject(send, pump.Frame{Kind: recorder.KindResize, Payload: payload})
			if errors.Is(err, pump.ErrClosed) {
				// No more input to order it with: recorded, then sent.
				// A wait cut short by the session's end is no recording
				// failure.
				var seq uint64
				if seq, err = rec.Append(recorder.KindResize, 0, payload); err == nil {
					if err = rec.Wait(ctx, seq); err == nil {
						send()
					}
				}
				if err != nil && ctx.Err() == nil {
					p.Stop(pump.RecordingFailed(err))
				}
			}
			req.Reply(err == nil, nil)
		case "signal":
			var sig struct{ Signal string }
			if ssh.Unmarshal(req.Payload, &sig) != nil {
				req.Reply(false, nil)
				continue
			}
			// As for local commands: the signal is recorded first, but
			// sent even if its record is slow to commit.
			if seq, err := rec.Append(recorder.KindSignal, 0, []byte(sig.Signal)); err == nil {
				wctx, cancel := context.WithTimeout(ctx, local.SignalCommitWait)
				rec.Wait(wctx, seq)
				cancel()
			}
			uch.SendRequest("signal", false, req.Payload)
			req.Reply(true, nil)
		default:
			req.Reply(false, nil)
		}
	}
	select {
	case <-done:
	default:
		p.Stop(errors.New("the client closed the session"))
	}
}

// keepalive asks the target every interval whether the connection is
// alive, and calls fail when it is not, until ctx ends.
func keepalive(ctx context.Context, conn ssh.Conn, every time.Duration, fail func(error)) {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	tick.Every(ctx, every, nil, func() {
		answered := make(chan error, 1)
		go func() {
			_, _, err := conn.SendRequest("keepalive@openssh.com", true, nil)
			answered <- err
		}()
		select {
		case err := <-answered:
			if err != nil {
				fail(fmt.Errorf("the connection to the target failed: %w", err))
				stop()
			}
		case <-time.After(upstreamKeepaliveMissed * every):
			fail(errors.New("the target stopped answering keepalives"))
			stop()
		case <-ctx.Done():
		}
	})
}
