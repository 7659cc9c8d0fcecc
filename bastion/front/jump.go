package front

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	gl "github.com/gliderlabs/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// Reasons of refusals particular to ssh -J, as journaled.
const (
	// ReasonJumpOnly: a session channel on the outer connection of ssh -J,
	// whose user name names no target.
	ReasonJumpOnly = events.ReasonNoTarget
)

// jumpRefused is what a client reads for any direct-tcpip channel the
// bastion refuses: an unknown target and a forbidden one look the same.
const jumpRefused = "bastion: port forwarding is not allowed"

// directTCPIP is a "direct-tcpip" channel's request (RFC 4254 7.2).
type directTCPIP struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
}

// authInfoOf is who an authenticated connection is, or nil.
func authInfoOf(conn *ssh.ServerConn) *authInfo {
	if conn == nil || conn.Permissions == nil {
		return nil
	}
	info, _ := conn.Permissions.ExtraData[authInfoKey{}].(*authInfo)
	return info
}

// handleSessionOrJump serves a session channel, unless the connection is
// the outer connection of ssh -J (user name LOGIN alone), which routes
// nowhere: its session is refused, and journaled as a refused login.
func (f *Front) handleSessionOrJump(srv *gl.Server, conn *ssh.ServerConn, nc ssh.NewChannel, ctx gl.Context) {
	if info := authInfoOf(conn); info != nil && info.target.Name == "" {
		f.refusedWith(conn.User(), conn.RemoteAddr(), info.cert, &refusal{reason: ReasonJumpOnly, detail: "a session needs a target: the user name is not LOGIN@TARGET"}, recorder.Attrs{"identity": info.identity})
		nc.Reject(ssh.Prohibited, "bastion: Permission denied: name a target, as LOGIN@TARGET@bastion or ssh -J bastion LOGIN@TARGET")
		return
	}
	f.handleSession(srv, conn, nc, ctx)
}

// handleJump serves ssh -J: a direct-tcpip channel to a configured
// target name (any port: the name alone selects the target) carries an
// inner SSH connection that the bastion terminates itself, with a host
// certificate for the target name, authenticates with the same
// certificate as the outer connection, and whose sessions run on the
// target exactly as in the username form. Every other direct-tcpip
// channel is refused, and journaled.
func (f *Front) handleJump(_ *gl.Server, conn *ssh.ServerConn, nc ssh.NewChannel, ctx gl.Context) {
	outer := authInfoOf(conn)
	if outer == nil {
		nc.Reject(ssh.Prohibited, "bastion: not authenticated")
		return
	}
	var req directTCPIP
	if err := ssh.Unmarshal(nc.ExtraData(), &req); err != nil {
		f.channelRefused(conn, outer, nc.ChannelType(), "", events.ReasonBadChannelData, err.Error())
		nc.Reject(ssh.Prohibited, jumpRefused)
		return
	}
	if outer.target.Name != "" {
		// A connection routed to a target: a port forward from it.
		f.handleForward(conn, outer, nc, req, ctx)
		return
	}
	dest := net.JoinHostPort(req.Host, strconv.FormatUint(uint64(req.Port), 10))
	set := f.targets.Load()
	t, ok := set.byName[req.Host]
	if !ok {
		f.channelRefused(conn, outer, nc.ChannelType(), dest, events.ReasonNotTargetName, req.Host)
		nc.Reject(ssh.Prohibited, jumpRefused)
		return
	}
	if !f.mayReachAny(outer, t.Name) {
		// Refused like a name that is no target.
		f.channelRefused(conn, outer, nc.ChannelType(), dest, events.ReasonNotPermitted, t.Name)
		nc.Reject(ssh.Prohibited, jumpRefused)
		return
	}
	host, err := f.jumpHosts.signer(f, t.Name)
	if err != nil {
		f.log.Error("ssh -J: host certificate", "target", t.Name, "error", err)
		nc.Reject(ssh.ConnectionFailed, "bastion: the target's host certificate could not be made")
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	defer ch.Close()

	c := &channelConn{Channel: ch, local: conn.LocalAddr(), remote: conn.RemoteAddr()}
	preAuth := time.AfterFunc(f.opts.Config.PreAuthTimeout, func() {
		f.log.Debug("ssh -J inner connection pre-auth timeout", "client", outer.client, "target", t.Name)
		ch.Close()
	})
	cfg := f.jumpConfig(ctx, conn, outer, set, t, dest, host)
	inner, chans, greqs, err := ssh.NewServerConn(c, cfg)
	preAuth.Stop()
	if err != nil {
		f.log.Debug("ssh -J inner connection failed", "client", outer.client, "target", t.Name, "error", err)
		return
	}
	defer inner.Close()
	// No global request (tcpip-forward…) is granted on the inner
	// connection either.
	go ssh.DiscardRequests(greqs)

	// Session channels are served by the same handler as the username
	// form's, so they are recorded, registered and ended the same way.
	info := authInfoOf(inner)
	ictx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sctx := innerContext{Context: ctx, inner: ictx}
	var wg sync.WaitGroup
	for nc := range chans {
		if nc.ChannelType() == "direct-tcpip" {
			var fwd directTCPIP
			if err := ssh.Unmarshal(nc.ExtraData(), &fwd); err != nil {
				f.channelRefused(inner, info, nc.ChannelType(), "", events.ReasonBadChannelData, err.Error())
				nc.Reject(ssh.Prohibited, jumpRefused)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.handleForward(inner, info, nc, fwd, sctx)
			}()
			continue
		}
		if nc.ChannelType() != "session" {
			refuseChannel(nil, inner, nc, nil)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.handleSession(nil, inner, nc, sctx)
		}()
	}
	// The inner connection is gone, as the outer one is when gliderlabs
	// cancels a connection's context: its sessions stop and record their
	// end.
	cancel(errors.New("the ssh -J connection closed"))
	wg.Wait()
}

// innerContext is the gliderlabs context of the outer connection, done
// when the inner connection of ssh -J ends (or the outer one does).
type innerContext struct {
	gl.Context
	inner context.Context // derived from the outer connection's context
}

func (c innerContext) Deadline() (time.Time, bool) { return c.inner.Deadline() }
func (c innerContext) Done() <-chan struct{}       { return c.inner.Done() }
func (c innerContext) Err() error                  { return c.inner.Err() }
func (c innerContext) Value(key any) any           { return c.inner.Value(key) }

// jumpConfig is x/crypto's configuration for the inner connection of
// ssh -J: the front door's algorithms, the target name's host
// certificate, and the front door's certificate checks with the inner
// user name as the login, the outer client's address for source-address,
// and the outer connection's certificate (same serial) required.
func (f *Front) jumpConfig(ctx gl.Context, outerConn *ssh.ServerConn, outer *authInfo, set *TargetSet, t Target, dest string, host ssh.Signer) *ssh.ServerConfig {
	cfg := f.serverConfig(ctx)
	cfg.ServerVersion = "SSH-2.0-bastion-jump"
	extra := func() recorder.Attrs {
		return recorder.Attrs{"route": RouteJump, "target": t.Name, "destination": dest, "outer.user": outerConn.User(), "outer.serial": strconv.FormatUint(outer.serial, 10)}
	}
	// Keys merely offered: only tells the client whether one is worth
	// proving, as precheck does for the outer connection.
	cfg.PublicKeyCallback = func(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		if r := f.offerRefusal(key); r != nil {
			f.refusedWith(conn.User(), conn.RemoteAddr(), key, r, extra())
			return nil, r
		}
		return &ssh.Permissions{}, nil
	}
	cfg.VerifiedPublicKeyCallback = func(conn ssh.ConnMetadata, key ssh.PublicKey, _ *ssh.Permissions, _ string) (*ssh.Permissions, error) {
		info, r := f.checkAs(conn, key, set, func(_ *TargetSet, user string) (string, Target, string, *refusal) {
			return user, t, RouteJump, nil
		})
		if r == nil && info.serial != outer.serial {
			r = &refusal{reason: events.ReasonJumpCertificate, detail: fmt.Sprintf("serial %d, the outer connection's is %d", info.serial, outer.serial)}
		}
		if r != nil {
			f.refusedWith(conn.User(), conn.RemoteAddr(), key, r, extra())
			return nil, r
		}
		f.jumped(info, outerConn.User(), dest)
		return &ssh.Permissions{
			CriticalOptions: info.cert.CriticalOptions,
			Extensions:      info.cert.Extensions,
			ExtraData:       map[any]any{authInfoKey{}: info},
		}, nil
	}
	cfg.AddHostKey(host)
	return cfg
}

// jumped journals an authenticated inner connection of ssh -J.
func (f *Front) jumped(info *authInfo, outerUser, dest string) {
	attrs := info.addTo(recorder.Attrs{"login": info.login, "target": info.target.Name, "destination": dest, "outer.user": outerUser})
	attrs["route"] = RouteJump
	f.journal(events.Jump, attrs, "an ssh -J connection")
}

// requestRefused journals (and logs) a refused request of the connection
// that info authenticated.
func (f *Front) requestRefused(info *authInfo, user string, reqType, reason string) {
	attrs := recorder.Attrs{"reason": reason, "request": reqType, "user": user}
	if info != nil {
		info.addTo(attrs)
	}
	f.textMasker().Fields(attrs, clientText...)
	f.log.Info("ssh request refused", "reason", reason, "request", reqType, "user", attrs["user"], "client", attrs["client"])
	f.journal(events.RequestRefused, attrs, "a refused ssh request")
}

// channelRefused journals (and logs) a refused channel of an
// authenticated connection.
func (f *Front) channelRefused(conn *ssh.ServerConn, info *authInfo, channelType, dest, reason, detail string) {
	attrs := recorder.Attrs{
		"reason":  reason,
		"channel": channelType,
		"user":    conn.User(),
		"client":  addrString(conn.RemoteAddr()),
	}
	if dest != "" {
		attrs["destination"] = dest
	}
	if detail != "" {
		attrs["detail"] = detail
	}
	if info != nil {
		info.addTo(attrs)
	}
	f.textMasker().Fields(attrs, clientText...)
	f.log.Info("ssh channel refused", "reason", reason, "channel", channelType, "destination", attrs["destination"], "user", attrs["user"], "client", attrs["client"])
	f.journal(events.ChannelRefused, attrs, "a refused ssh channel")
}

// jumpHostCerts are the host certificates presented under ssh -J, one per
// target name, each over an ephemeral key that never leaves memory.
type jumpHostCerts struct {
	mu    sync.Mutex
	certs map[string]jumpHostCert // guarded by mu; made on first use
}

type jumpHostCert struct {
	signer ssh.Signer
	end    time.Time
}

// signer returns the host certificate signer for target name, minting
// one when there is none or less than half of its validity is left.
func (j *jumpHostCerts) signer(f *Front, name string) (ssh.Signer, error) {
	now := f.now()
	j.mu.Lock()
	defer j.mu.Unlock()
	if c, ok := j.certs[name]; ok && now.Before(c.end.Add(-hostCertTTL/2)) {
		return c.signer, nil
	}
	// In FIPS mode the inner connection's host key is ECDSA P-256, as
	// the front door's own is.
	generate := newEd25519Key
	if f.opts.Config.FIPS {
		generate = newECDSAKey
	}
	priv, err := generate()
	if err != nil {
		return nil, err
	}
	key, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	cert := &ssh.Certificate{
		Key:             key.PublicKey(),
		Serial:          serial,
		CertType:        ssh.HostCert,
		KeyId:           "bastion jump host " + name,
		ValidPrincipals: []string{name},
		ValidAfter:      uint64(now.Add(-hostCertBackdate).Unix()),
		ValidBefore:     uint64(now.Add(hostCertTTL).Unix()),
	}
	if err := f.opts.Authorities.Host.Sign(cert); err != nil {
		return nil, fmt.Errorf("ssh: sign the host certificate for %s: %w", name, err)
	}
	signer, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		return nil, fmt.Errorf("ssh: host certificate for %s: %w", name, err)
	}
	if j.certs == nil {
		j.certs = map[string]jumpHostCert{}
	}
	j.certs[name] = jumpHostCert{signer: signer, end: now.Add(hostCertTTL)}
	return signer, nil
}

// channelConn is an SSH channel as a net.Conn, for an SSH connection
// inside it. Its addresses are the outer connection's, so that the inner
// connection's source-address checks see the real client. Deadlines are
// not supported (the SSH server handshake sets none).
type channelConn struct {
	ssh.Channel
	local, remote net.Addr
}

var _ net.Conn = (*channelConn)(nil)

func (c *channelConn) LocalAddr() net.Addr              { return c.local }
func (c *channelConn) RemoteAddr() net.Addr             { return c.remote }
func (c *channelConn) SetDeadline(time.Time) error      { return errors.ErrUnsupported }
func (c *channelConn) SetReadDeadline(time.Time) error  { return errors.ErrUnsupported }
func (c *channelConn) SetWriteDeadline(time.Time) error { return errors.ErrUnsupported }
