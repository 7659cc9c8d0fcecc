package front

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestQuickAck reads through withQuickAck over loopback TCP, in turns as
// a handshake goes: the bytes arrive as sent, and after each read that
// emptied the socket the socket is in quick-ACK mode. Without the wrapper's setsockopt the turns
// put the kernel in its interactive (delayed-ACK) mode and the flag reads
// 0 from the second read on.
func TestQuickAck(t *testing.T) {
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
		for _, m := range []string{"SSH-2.0-x\r\n", "kexinit", "ecdh-init"} {
			if _, err := c.Write([]byte(m)); err != nil {
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
	if _, ok := c.(*quickAckConn); !ok {
		t.Fatalf("withQuickAck(%T) = %T, want the quick-ACK wrapper", raw, c)
	}
	for _, want := range []string{"SSH-2.0-x\r\n", "kexinit", "ecdh-init"} {
		// As x/crypto reads, into a buffer larger than what has arrived.
		var got []byte
		for len(got) < len(want) {
			buf := make([]byte, 4096)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, buf[:n]...)
		}
		if string(got) != want {
			t.Fatalf("read %q, want %q", got, want)
		}
		var v int
		if err := c.(*quickAckConn).raw.Control(func(fd uintptr) {
			v, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK)
		}); err != nil {
			t.Fatal(err)
		}
		if err != nil || v != 1 {
			t.Fatalf("after a read TCP_QUICKACK = %d (%v), want 1", v, err)
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
