package front

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestQuickAck reads through withQuickAck over loopback TCP in turns, as
// an SSH handshake and a session go, and as x/crypto/ssh reads: a
// packet's length through a bufio.Reader, then the rest with
// io.ReadFull (straight into the packet for large ones). The peer leaves
// Nagle's algorithm on, as OpenSSH does. The bytes arrive as sent, and
// after each packet the socket is in quick-ACK mode, small packets and a
// 16 KiB one alike. Without the wrapper's setsockopt the turns put the
// kernel in its interactive (delayed-ACK) mode and the flag reads 0.
func TestQuickAck(t *testing.T) {
	sizes := []int{60, 1200, 44, 16 << 10, 300}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.(*net.TCPConn).SetNoDelay(false)
		for i, n := range sizes {
			msg := make([]byte, 4+n)
			binary.BigEndian.PutUint32(msg, uint32(n))
			for k := range n {
				msg[4+k] = byte(i)
			}
			if _, err := c.Write(msg); err != nil {
				return
			}
			var b [1]byte
			if _, err := c.Read(b[:]); err != nil {
				return
			}
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := withQuickAck(raw)
	defer c.Close()
	qc, ok := c.(*quickAckConn)
	if !ok {
		t.Fatalf("withQuickAck(%T) = %T, want the quick-ACK wrapper", raw, c)
	}
	r := bufio.NewReader(c)
	for i, n := range sizes {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			t.Fatal(err)
		}
		if got := int(binary.BigEndian.Uint32(hdr[:])); got != n {
			t.Fatalf("packet %d: length %d, want %d", i, got, n)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatal(err)
		}
		for _, b := range body {
			if b != byte(i) {
				t.Fatalf("packet %d: byte %d, want %d", i, b, i)
			}
		}
		var v int
		if err := qc.raw.Control(func(fd uintptr) {
			v, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK)
		}); err != nil {
			t.Fatal(err)
		}
		if err != nil || v != 1 {
			t.Fatalf("after packet %d (%d bytes) TCP_QUICKACK = %d (%v), want 1", i, n, v, err)
		}
		if _, err := c.Write([]byte{'.'}); err != nil {
			t.Fatal(err)
		}
	}

	// Anything but a TCP connection is returned as it is.
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if got := withQuickAck(p1); got != p1 {
		t.Fatalf("withQuickAck(pipe) = %T, want the pipe itself", got)
	}
}
