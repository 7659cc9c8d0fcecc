package front

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// withQuickAck returns c, a TCP connection, so that every read that
// returns data also has the kernel acknowledge it at once (TCP_QUICKACK)
// rather than after its delayed-ACK timer (40 ms on Linux).
//
// Why: a peer that leaves Nagle's algorithm on (OpenSSH's client and
// sshd do, outside interactive sessions) holds a small packet back until
// the one before it is acknowledged. In an SSH handshake or a request
// and its reply, the bastion often has nothing to send back at once to
// carry the acknowledgement, so each such step waited for the timer:
// measured on loopback, 47 ms in the front door's key exchange (OpenSSH
// sends KEXINIT and then KEX_ECDH_INIT) and 43 ms on the upstream
// connection after sshd's authentication, of an "ssh … true" of 175 ms.
// Acknowledging at once costs a setsockopt after each read that empties
// the socket's receive queue and, at worst, an ACK segment sooner than
// it would have gone. Linux leaves the mode again on its own, hence the
// call after every such read.
func withQuickAck(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &quickAckConn{TCPConn: tc, raw: raw}
}

type quickAckConn struct {
	*net.TCPConn
	raw syscall.RawConn
}

func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	if n > 0 && n < len(p) {
		// The read emptied what had arrived: the peer may be holding
		// its next packet for this acknowledgement. (A read that fills
		// p leaves more to read, and a later one empties it: bulk
		// transfers, which fill their reads, make few of these calls.)
		// Best effort: a connection that cannot take it only loses the
		// shortcut.
		c.raw.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
		})
	}
	return n, err
}
