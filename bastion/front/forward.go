package front

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion/pump"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// handleForward serves a local port forward (ssh -L, or -W) on a
// connection routed to an SSH target: where policy allows the
// destination, the bastion opens it from the target over a connection of
// its own, and records the forward as a session of its own (kind
// "forward": origin and destination in the start leaf, the bytes each way
// as input and output frames), record then forward like every session.
// Command targets have no network to forward into: refused.
func (f *Front) handleForward(conn *ssh.ServerConn, info *authInfo, nc ssh.NewChannel, req directTCPIP, ctx context.Context) {
	dest := net.JoinHostPort(req.Host, strconv.FormatUint(uint64(req.Port), 10))
	origin := net.JoinHostPort(req.OriginHost, strconv.FormatUint(uint64(req.OriginPort), 10))
	refuse := func(reason, detail, msg string) {
		f.channelRefused(conn, info, nc.ChannelType(), dest, reason, detail)
		nc.Reject(ssh.Prohibited, "bastion: "+msg)
	}
	if info.target.SSH == "" {
		refuse(events.ReasonForwardCommandTarget, info.target.Name, "port forwarding reaches only SSH targets, and "+info.target.Name+" is a command")
		return
	}
	if _, ok := info.cert.Extensions[policy.PermitPortForwarding]; !ok {
		refuse(events.ReasonForwardNotPermitted, "", "your certificate does not permit port forwarding")
		return
	}
	q := f.request(info, info.login, info.target.Name, policy.ActionForward)
	q.Forward = dest
	d, hash := f.decide(q)
	if d.Allow && d.Limits.Masking != "" {
		// A forward's bytes are a protocol masking would corrupt, and
		// must not pass unmasked.
		d.Allow, d.Reason = false, fmt.Sprintf("the role masks output (profile %q), and a forward's bytes cannot be masked", d.Limits.Masking)
	}
	if !d.Allow {
		refuse(events.ReasonPolicyDenied, d.Reason+" (rule "+d.Rule+")", "policy denies a port forward to "+dest+": "+d.Reason)
		return
	}
	lctx, life, leave, ok := f.enterSession(ctx, info, nc)
	if !ok {
		return
	}
	defer leave()
	life.apply(d)
	if err := f.opts.Journal.Err(); err != nil {
		nc.Reject(ssh.ResourceShortage, "bastion: the journal is failing, so nothing can be recorded")
		return
	}

	attrs := info.addTo(recorder.Attrs{
		"kind": "ssh", "request": "direct-tcpip", "login": info.login,
		"target": info.target.Name, "target-kind": "ssh",
		"upstream.address": info.target.SSH, "upstream.user": info.login,
		"forward.destination": dest, "forward.origin": origin,
	})
	(&frontSession{decision: d, policyHash: hash}).policyAttrs(attrs)
	u := info.targets.upstreams[info.target.Name]
	var serial uint64
	if u.userKey != nil {
		attrs["upstream.auth"] = "key"
	} else {
		var err error
		if serial, err = randomSerial(); err != nil {
			nc.Reject(ssh.ConnectionFailed, "bastion: "+err.Error())
			return
		}
		attrs["upstream.auth"] = "certificate"
		attrs["upstream.serial"] = strconv.FormatUint(serial, 10)
	}
	sess, err := f.opts.Journal.StartSession(lctx, recorder.SessionInfo{Attrs: attrs})
	if err != nil {
		f.log.Error("start recording a port forward", "error", err, "identity", info.identity)
		nc.Reject(ssh.ResourceShortage, "bastion: the forward cannot be recorded, so it is not opened")
		return
	}
	life.setID(sess.ID().String())
	rec := journalRecorder{sess, life, f.metrics}
	f.metrics.SessionStarted("direct-tcpip")
	end := recorder.Attrs{"reason": events.EndClosed}
	finish := func(reason string, err error) {
		if reason != "" {
			end["reason"] = reason
		}
		if err != nil {
			end["detail"] = err.Error()
		}
		if e := endCause(lctx); e != nil {
			end["reason"], end["detail"] = e.reason, e.message
			for k, v := range e.attrs {
				end[k] = v
			}
		}
		f.metrics.SessionEnded(end["reason"])
		if err := sess.End(context.WithoutCancel(lctx), end); err != nil {
			f.log.Error("end recording a port forward", "error", err, "session", sess.ID().String())
		}
	}

	auth := u.userKey
	if auth == nil {
		signer, cert, err := f.upstreamCert(sess.ID().String(), info.identity, info.login, serial, policy.PermitPortForwarding)
		if err != nil {
			finish("error", err)
			nc.Reject(ssh.ConnectionFailed, "bastion: the forward failed")
			return
		}
		auth = signer
		end["upstream.key-id"] = cert.KeyId
	}
	client, hostKey, err := u.dial(lctx, info.login, auth)
	if err != nil {
		finish("error", fmt.Errorf("connect to %s: %w", info.target.SSH, err))
		nc.Reject(ssh.ConnectionFailed, "bastion: the target cannot be reached")
		return
	}
	defer client.Close()
	end["upstream.host-key.sha256"] = ssh.FingerprintSHA256(hostKey)
	tc, err := client.Dial("tcp", dest)
	if err != nil {
		finish("refused-by-target", err)
		nc.Reject(ssh.ConnectionFailed, "bastion: the target could not connect to "+dest)
		return
	}
	defer tc.Close()
	ch, reqs, err := nc.Accept()
	if err != nil {
		finish("error", err)
		return
	}
	defer ch.Close()
	go ssh.DiscardRequests(reqs)

	// The client's bytes are recorded as input and reach the destination;
	// the destination's are recorded as output and reach the client.
	closeWrite := func() {
		if cw, ok := tc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}
	p := pump.StartPipes(lctx, rec, pump.Ends{
		Stdin: ch, Input: tc, EndInput: closeWrite,
		Stdout: tc, ToStdout: ch,
	}, func() { tc.Close(); ch.Close() })
	stop := context.AfterFunc(lctx, func() { p.Stop(context.Cause(lctx)) })
	defer stop()
	<-p.OutputDone()
	ch.CloseWrite()
	switch err := p.Err(); {
	case errors.Is(err, pump.ErrRecordingFailed):
		f.log.Error("port forward ended: recording failed", "session", sess.ID().String(), "error", err)
		finish(events.EndRecordingFailed, err)
	case err != nil:
		finish("", err)
	default:
		finish("", nil)
	}
}
