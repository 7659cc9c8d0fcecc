package bastion

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
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

// transferFixture runs the real scp and sftp clients through the front
// door.
type transferFixture struct {
	*frontFixture
	dir string
}

func (tx *transferFixture) args(port string) []string {
	return []string{
		"-F", "none", "-i", tx.key, "-P", port,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + tx.knownHosts,
		"-o", "GlobalKnownHostsFile=none", "-o", "ConnectTimeout=10",
	}
}

// run runs tool (scp or sftp) with the fixture's options and args.
func (tx *transferFixture) run(t *testing.T, tool string, args ...string) {
	t.Helper()
	cmd := exec.Command(needTool(t, tool), append(tx.args(tx.port), args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", tool, args, err, out)
	}
}

func randomFile(t *testing.T, path string, n int) [32]byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // whatever the umask: scp -O sends the mode
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// transfers are the file records of the sftp sessions of target.
func (tx *transferFixture) transfers(t *testing.T, target string) []recorder.Attrs {
	t.Helper()
	var out []recorder.Attrs
	for _, s := range tx.sessions(t) {
		if s.attrs["target"] != target || s.attrs["request"] != "subsystem" {
			continue
		}
		if s.attrs["subsystem"] != "sftp" || s.end == nil {
			t.Fatalf("session %v, end %v", s.attrs, s.end)
		}
		for _, f := range s.frames {
			if recorder.Kind(f.Kind) != recorder.KindSubsystem {
				continue
			}
			a, _, err := recorder.ParseAttrs(f.Payload)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, a)
		}
	}
	return out
}

// wantTransfer checks that a file record of path says direction, size
// and sum.
func wantTransfer(t *testing.T, recs []recorder.Attrs, path, direction string, size int, sum [32]byte) {
	t.Helper()
	for _, a := range recs {
		if a["event"] == "file" && a["path"] == path && a["direction"] == direction {
			if a["bytes"] != fmt.Sprint(size) || a["sha256"] != hex.EncodeToString(sum[:]) || a["closed"] != "close" {
				t.Fatalf("record of %s %s: %v", direction, path, a)
			}
			return
		}
	}
	t.Fatalf("no %s record of %s in %v", direction, path, recs)
}

// testTransfers uploads and downloads a 3 MB file with scp (SFTP
// protocol), sftp -b, and scp -O (the legacy protocol, through exec) as
// user, to a target whose files are local to the test, and checks the
// bytes and the journal.
func testTransfers(t *testing.T, tx *transferFixture, user, target string) {
	const size = 3 << 20
	local := filepath.Join(tx.dir, "local.bin")
	sum := randomFile(t, local, size)
	content, err := os.ReadFile(local)
	if err != nil {
		t.Fatal(err)
	}
	remote := filepath.Join(tx.dir, "remote")
	if err := os.MkdirAll(remote, 0o755); err != nil {
		t.Fatal(err)
	}
	host := user + "@127.0.0.1:"

	// scp, SFTP protocol (OpenSSH 9's default).
	up := filepath.Join(remote, "scp-up.bin")
	tx.run(t, "scp", local, host+up)
	down := filepath.Join(tx.dir, "scp-down.bin")
	tx.run(t, "scp", host+up, down)
	if fileSum(t, up) != sum || fileSum(t, down) != sum {
		t.Fatal("scp: the files differ")
	}

	// sftp -b.
	sup := filepath.Join(remote, "sftp-up.bin")
	sdown := filepath.Join(tx.dir, "sftp-down.bin")
	batch := filepath.Join(tx.dir, "batch")
	if err := os.WriteFile(batch, []byte(fmt.Sprintf("put %s %s\nget %s %s\n", local, sup, sup, sdown)), 0o644); err != nil {
		t.Fatal(err)
	}
	tx.run(t, "sftp", "-b", batch, user+"@127.0.0.1")
	if fileSum(t, sup) != sum || fileSum(t, sdown) != sum {
		t.Fatal("sftp: the files differ")
	}

	// scp -O: scp -t through exec.
	oup := filepath.Join(remote, "scp-legacy.bin")
	tx.run(t, "scp", "-O", local, host+oup)
	if fileSum(t, oup) != sum {
		t.Fatal("scp -O: the file differs")
	}

	recs := tx.transfers(t, target)
	wantTransfer(t, recs, up, "upload", size, sum)
	wantTransfer(t, recs, up, "download", size, sum)
	wantTransfer(t, recs, sup, "upload", size, sum)
	wantTransfer(t, recs, sup, "download", size, sum)
	legacy := false
	for _, s := range tx.sessions(t) {
		if s.attrs["target"] == target && s.attrs["request"] == "exec" && strings.HasPrefix(s.attrs["command"], "scp ") && strings.Contains(s.attrs["command"], " -t ") {
			in := s.stream(recorder.KindInput)
			if !bytes.Contains(in, []byte(fmt.Sprintf("C0644 %d local.bin\n", size))) || !bytes.Contains(in, content) || s.end["exit-status"] != "0" {
				t.Fatalf("scp -O session: %v, end %v", s.attrs, s.end)
			}
			legacy = true
		}
	}
	if !legacy {
		t.Fatal("no scp -O session recorded")
	}
	tx.verify(t)
}

// TestFrontSFTPLocal: scp, sftp and scp -O to a local command target.
func TestFrontSFTPLocal(t *testing.T) {
	t.Parallel()
	needTool(t, "scp")
	needTool(t, "sftp")
	if findSFTPServer() == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("sftp-server is required in CI")
		}
		t.Skip("no sftp-server")
	}
	fx := startFront(t)
	tx := &transferFixture{frontFixture: fx, dir: t.TempDir()}
	testTransfers(t, tx, "ops@box", "box")
}

// TestFrontSFTPUpstream: the same to an sshd target, whose sftp subsystem
// the bastion requests upstream.
func TestFrontSFTPUpstream(t *testing.T) {
	t.Parallel()
	needTool(t, "scp")
	needTool(t, "sftp")
	dir := t.TempDir()
	caFile := filepath.Join(dir, "target_ca.pub")
	if err := os.WriteFile(caFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sd := startSSHD(t, "TrustedUserCAKeys "+caFile, "Subsystem sftp internal-sftp")
	hostPub, err := os.ReadFile(filepath.Join(sd.dir, "host_ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	login := currentLogin(t)
	fx := startFrontWith(t, login, frontConfig+fmt.Sprintf(`
target "files" {
  ssh      = %q
  host_key = %q
}
`, sd.addr, strings.Join(strings.Fields(string(hostPub))[:2], " ")))
	if err := os.WriteFile(caFile, []byte(strings.Join(fx.ts.auth.Target.AuthorizedKeys(), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tx := &transferFixture{frontFixture: fx, dir: t.TempDir()}
	testTransfers(t, tx, login+"@files", "files")
}
