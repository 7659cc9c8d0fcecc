package front

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"

	"github.com/bastionhq/bastion/recorder"
)

// sftpPacket encodes an SFTP packet of type typ with fields: uint32,
// uint64, string ([]byte or string).
func sftpPacket(typ byte, fields ...any) []byte {
	var b []byte
	for _, f := range fields {
		switch v := f.(type) {
		case uint32:
			b = binary.BigEndian.AppendUint32(b, v)
		case uint64:
			b = binary.BigEndian.AppendUint64(b, v)
		case string:
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		case []byte:
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		default:
			panic(fmt.Sprintf("field %T", f))
		}
	}
	p := binary.BigEndian.AppendUint32(nil, uint32(len(b)+1))
	p = append(p, typ)
	return append(p, b...)
}

// feedSplit feeds p to feed in random pieces and collects the metadata.
func feedSplit(r *mrand.Rand, feed func([]byte) [][]byte, p []byte) []recorder.Attrs {
	var out []recorder.Attrs
	for len(p) > 0 {
		n := 1 + r.IntN(min(len(p), 7000))
		for _, m := range feed(p[:n]) {
			a, rest, err := recorder.ParseAttrs(m)
			if err != nil || len(rest) != 0 {
				panic(err)
			}
			out = append(out, a)
		}
		p = p[n:]
	}
	return out
}

// TestSFTPObserver: an upload and a download, in any split of the byte
// streams, are reported with their path, direction, size and SHA-256; an
// out-of-order write is counted but not hashed; a failed OPEN reports
// nothing.
func TestSFTPObserver(t *testing.T) {
	t.Parallel()
	content := make([]byte, 100_000)
	rand.Read(content)
	sum := sha256.Sum256(content)
	for seed := range uint64(20) {
		r := mrand.New(mrand.NewPCG(seed, 1))
		o := newSFTPObserver()
		cl := func(p []byte) []recorder.Attrs { return feedSplit(r, o.fromClient, p) }
		sv := func(p []byte) []recorder.Attrs { return feedSplit(r, o.fromServer, p) }
		var got []recorder.Attrs
		got = append(got, cl(sftpPacket(sftpInit, uint32(3)))...)
		got = append(got, sv(sftpPacket(sftpVersion, uint32(3), "posix-rename@openssh.com", "1"))...)
		// Upload, in 3 writes, the last two pipelined.
		got = append(got, cl(sftpPacket(sftpOpen, uint32(1), "/tmp/up.bin", uint32(0x1a), uint32(0)))...)
		got = append(got, sv(sftpPacket(sftpHandle, uint32(1), "H1"))...)
		var w []byte
		w = append(w, sftpPacket(sftpWrite, uint32(2), "H1", uint64(0), content[:40_000])...)
		w = append(w, sftpPacket(sftpWrite, uint32(3), "H1", uint64(40_000), content[40_000:90_000])...)
		w = append(w, sftpPacket(sftpWrite, uint32(4), "H1", uint64(90_000), content[90_000:])...)
		got = append(got, cl(w)...)
		got = append(got, sv(append(sftpPacket(sftpStatus, uint32(2), uint32(0), "", ""), sftpPacket(sftpStatus, uint32(3), uint32(0), "", "")...))...)
		got = append(got, cl(sftpPacket(sftpClose, uint32(5), "H1"))...)
		// A failed OPEN: nothing to report.
		got = append(got, cl(sftpPacket(sftpOpen, uint32(6), "/nope", uint32(1), uint32(0)))...)
		got = append(got, sv(sftpPacket(sftpStatus, uint32(6), uint32(2), "No such file", ""))...)
		// Download: two pipelined reads, then EOF.
		got = append(got, cl(sftpPacket(sftpOpen, uint32(7), "/tmp/down.bin", uint32(1), uint32(0)))...)
		got = append(got, sv(sftpPacket(sftpHandle, uint32(7), "H2"))...)
		got = append(got, cl(append(sftpPacket(sftpRead, uint32(8), "H2", uint64(0), uint32(60_000)), sftpPacket(sftpRead, uint32(9), "H2", uint64(60_000), uint32(60_000))...))...)
		got = append(got, sv(append(sftpPacket(sftpData, uint32(8), content[:60_000]), sftpPacket(sftpData, uint32(9), content[60_000:])...))...)
		got = append(got, cl(sftpPacket(sftpRead, uint32(10), "H2", uint64(100_000), uint32(60_000)))...)
		got = append(got, sv(sftpPacket(sftpStatus, uint32(10), uint32(1), "EOF", ""))...)
		got = append(got, cl(sftpPacket(sftpClose, uint32(11), "H2"))...)
		// A write at an offset other than where the content stands.
		got = append(got, cl(sftpPacket(sftpOpen, uint32(12), "/tmp/resume", uint32(2), uint32(0)))...)
		got = append(got, sv(sftpPacket(sftpHandle, uint32(12), "H3"))...)
		got = append(got, cl(sftpPacket(sftpWrite, uint32(13), "H3", uint64(5), content[:10]))...)
		// Left open when the session ends.
		got = append(got, cl(sftpPacket(sftpOpen, uint32(14), "/tmp/open", uint32(2), uint32(0)))...)
		got = append(got, sv(sftpPacket(sftpHandle, uint32(14), "H4"))...)
		got = append(got, cl(sftpPacket(sftpClose, uint32(15), "H3"))...)
		for _, m := range o.finish() {
			a, _, _ := recorder.ParseAttrs(m)
			got = append(got, a)
		}

		want := []recorder.Attrs{
			{"event": "file", "path": "/tmp/up.bin", "flags": "0x1a", "closed": "close", "direction": "upload", "bytes": "100000", "sequential": "true", "sha256": hex.EncodeToString(sum[:])},
			{"event": "file", "path": "/tmp/down.bin", "flags": "0x1", "closed": "close", "direction": "download", "bytes": "100000", "sequential": "true", "sha256": hex.EncodeToString(sum[:])},
			{"event": "file", "path": "/tmp/resume", "flags": "0x2", "closed": "close", "direction": "upload", "bytes": "10", "sequential": "false"},
			{"event": "file", "path": "/tmp/open", "flags": "0x2", "closed": "session-end", "direction": "none", "bytes": "0", "sequential": "true", "sha256": hex.EncodeToString(sha256.New().Sum(nil))},
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("seed %d:\ngot  %v\nwant %v", seed, got, want)
		}
	}
}

// TestSFTPObserverGarbage: bytes that are not SFTP stop the observation
// once, with a record saying so, and nothing after.
func TestSFTPObserverGarbage(t *testing.T) {
	t.Parallel()
	o := newSFTPObserver()
	out := o.fromClient([]byte("SSH-2.0-not sftp at all\r\n"))
	if len(out) != 1 {
		t.Fatalf("%d records", len(out))
	}
	a, _, _ := recorder.ParseAttrs(out[0])
	if a["event"] != "sftp-unparsed" || !strings.Contains(a["detail"], "packet of") {
		t.Fatalf("%v", a)
	}
	if len(o.fromServer(make([]byte, 1000))) != 0 || len(o.fromClient([]byte{0, 0, 0, 1, 3})) != 0 || len(o.finish()) != 0 {
		t.Fatal("records after the stop")
	}
	// A packet too short for what its type holds.
	o = newSFTPObserver()
	out = o.fromClient(sftpPacket(sftpWrite, uint32(1)))
	if len(out) != 1 {
		t.Fatalf("short WRITE: %d records", len(out))
	}
}

// FuzzSFTPObserver: whatever the bytes, the observer neither panics nor
// holds more than its bounds.
func FuzzSFTPObserver(f *testing.F) {
	f.Add(sftpPacket(sftpOpen, uint32(1), "/x", uint32(2), uint32(0)), sftpPacket(sftpHandle, uint32(1), "h"))
	f.Add(sftpPacket(sftpWrite, uint32(2), "h", uint64(0), "data"), sftpPacket(sftpData, uint32(2), "data"))
	f.Add([]byte{0, 0, 0, 0}, []byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, c, s []byte) {
		o := newSFTPObserver()
		for i := 0; i < len(c) || i < len(s); i += 3 {
			o.fromClient(c[min(i, len(c)):min(i+3, len(c))])
			o.fromServer(s[min(i, len(s)):min(i+3, len(s))])
		}
		for _, m := range o.finish() {
			if _, _, err := recorder.ParseAttrs(m); err != nil {
				t.Fatal(err)
			}
		}
	})
}
