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
// Acknowledging at once costs a setsockopt after each read that may
// have emptied the socket's receive queue (see Read) and, at worst, an
// ACK segment sooner than it would have gone. Linux leaves the mode
// again on its own, hence the call after every such read.
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

// bufferedRead is the size of the reads x/crypto/ssh makes into its
// bufio.Reader's buffer (bufio's default); larger ones read the rest of a
// packet straight into it.
const bufferedRead = 4096

type quickAckConn struct {
	*net.TCPConn
	raw syscall.RawConn
}

func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	if n > 0 && (n < len(p) || len(p) > bufferedRead) {
		// The read may have emptied what had arrived, and the peer may
		// be holding its next packet for this acknowledgement: a read
		// that returned less than asked, or x/crypto's read of the rest
		// of a large packet, which bypasses its buffer and ends that
		// packet (it fills p even when nothing follows). Reads into the
		// buffer that fill it leave more to read: bulk transfers make
		// one call per packet, not per read. Best effort: a connection
		// that cannot take it only loses the shortcut.
		c.raw.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
		})
	}
	return n, err
}
