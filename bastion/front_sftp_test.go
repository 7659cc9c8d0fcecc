package bastion

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bastionhq/bastion/recorder"
)

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

// findSFTPServer returns the first executable sftp-server where the
// systems we know install it (as package front looks for it, to run it
// for a local command target's sftp subsystem), or "".
func findSFTPServer() string {
	for _, p := range []string{
		"/usr/lib/openssh/sftp-server",
		"/usr/libexec/openssh/sftp-server",
		"/usr/libexec/sftp-server",
		"/usr/lib/sftp-server",
		"/usr/lib/ssh/sftp-server",
	} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}
