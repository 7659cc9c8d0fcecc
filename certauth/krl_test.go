package certauth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/storage"
)

// sshKeygen returns the path of OpenSSH's ssh-keygen. Without it the test
// is skipped, except in CI, where it must be installed.
func sshKeygen(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("ssh-keygen")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ssh-keygen is required in CI: ", err)
		}
		t.Skip("ssh-keygen not found: ", err)
	}
	return p
}

func newCASigner(t testing.TB, alg Algorithm) ssh.Signer {
	t.Helper()
	var s ssh.Signer
	var err error
	switch alg {
	case AlgorithmEd25519:
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		s, err = ssh.NewSignerFromKey(priv)
	case AlgorithmECDSAP256:
		priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		s, err = ssh.NewSignerFromKey(priv)
	}
	if err != nil || s == nil {
		t.Fatalf("CA key %s: %v", alg, err)
	}
	return s
}

// certFiles writes OpenSSH user certificates into a directory.
type certFiles struct {
	t   *testing.T
	dir string
	key ssh.PublicKey // every certificate certifies this key
	n   int
}

func newCertFiles(t *testing.T) *certFiles {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &certFiles{t: t, dir: t.TempDir(), key: pub}
}

// write signs a certificate with ca and returns the file it wrote.
func (c *certFiles) write(ca ssh.Signer, serial uint64, keyID string) string {
	c.t.Helper()
	cert := &ssh.Certificate{
		Key:             c.key,
		Serial:          serial,
		CertType:        ssh.UserCert,
		KeyId:           keyID,
		ValidPrincipals: []string{"alice"},
		ValidBefore:     ssh.CertTimeInfinity,
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		c.t.Fatal(err)
	}
	c.n++
	p := filepath.Join(c.dir, fmt.Sprintf("cert%d-cert.pub", c.n))
	if err := os.WriteFile(p, ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// revokedBySSHKeygen asks "ssh-keygen -Q" whether krl revokes the
// certificate in certFile, checking both its exit status and its output.
func revokedBySSHKeygen(t *testing.T, krl, certFile string) bool {
	t.Helper()
	out, err := exec.Command(sshKeygen(t), "-Q", "-f", krl, certFile).CombinedOutput()
	// One line: "FILE (COMMENT): ok", or ": REVOKED" with exit status 1.
	line := string(out)
	oneLine := strings.HasPrefix(line, certFile) && strings.Count(line, "\n") == 1
	var ee *exec.ExitError
	switch {
	case err == nil && oneLine && strings.HasSuffix(line, ": ok\n"):
		return false
	case errors.As(err, &ee) && ee.ExitCode() == 1 && oneLine && strings.HasSuffix(line, ": REVOKED\n"):
		return true
	}
	t.Fatalf("ssh-keygen -Q -f %s %s: %v\n%s", krl, certFile, err, out)
	return false
}

func writeKRL(t *testing.T, k *KRL) string {
	t.Helper()
	data, err := k.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "revoked.krl")
	if err := storage.WriteFileAtomic(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKRLWithSSHKeygen(t *testing.T) {
	sshKeygen(t)
	const max = math.MaxUint64
	edCA, ecCA, otherCA := newCASigner(t, AlgorithmEd25519), newCASigner(t, AlgorithmECDSAP256), newCASigner(t, AlgorithmEd25519)
	certs := newCertFiles(t)

	type probe struct {
		ca      ssh.Signer
		serial  uint64
		keyID   string
		revoked bool
	}
	tests := []struct {
		name    string
		revoked []RevokedSerials
		probes  []probe
	}{
		{"empty", nil, []probe{
			{edCA, 1, "", false},
			{ecCA, max, "", false},
		}},
		{"ed25519 serial 1", []RevokedSerials{{CA: edCA.PublicKey(), Serials: []uint64{1}}}, []probe{
			{edCA, 1, "", true},
			{edCA, 2, "", false},
			{edCA, 0, "", false},
			{otherCA, 1, "", false},
		}},
		{"ecdsa", []RevokedSerials{{CA: ecCA.PublicKey(), Serials: []uint64{42, 7}}}, []probe{
			{ecCA, 7, "", true},
			{ecCA, 42, "", true},
			{ecCA, 41, "", false},
			{edCA, 42, "", false},
		}},
		{"large serials", []RevokedSerials{{CA: edCA.PublicKey(), Serials: []uint64{max, 1 << 63, max - 2}}}, []probe{
			{edCA, max, "", true},
			{edCA, max - 1, "", false},
			{edCA, max - 2, "", true},
			{edCA, 1 << 63, "", true},
			{edCA, 1<<63 + 1, "", false},
			{edCA, 1<<63 - 1, "", false},
		}},
		{"runs become ranges", []RevokedSerials{{CA: edCA.PublicKey(), Serials: []uint64{3, 10, 11, 12, 13, 20, 21, max - 2, max - 1, max}}}, []probe{
			{edCA, 3, "", true},
			{edCA, 9, "", false},
			{edCA, 10, "", true},
			{edCA, 12, "", true},
			{edCA, 13, "", true},
			{edCA, 14, "", false},
			{edCA, 21, "", true},
			{edCA, 22, "", false},
			{edCA, max - 3, "", false},
			{edCA, max - 1, "", true},
			{edCA, max, "", true},
		}},
		{"several CAs", []RevokedSerials{
			{CA: edCA.PublicKey(), Serials: []uint64{5}},
			{CA: ecCA.PublicKey(), Serials: []uint64{6}},
			{CA: edCA.PublicKey(), Serials: []uint64{8}}, // merged with the first
		}, []probe{
			{edCA, 5, "", true},
			{edCA, 6, "", false},
			{edCA, 8, "", true},
			{ecCA, 5, "", false},
			{ecCA, 6, "", true},
			{otherCA, 5, "", false},
		}},
		{"key IDs", []RevokedSerials{{CA: edCA.PublicKey(), KeyIDs: []string{"alice@example.com", "bob"}}}, []probe{
			{edCA, 99, "alice@example.com", true},
			{edCA, 99, "bob", true},
			{edCA, 99, "carol", false},
			{ecCA, 99, "bob", false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			krl := writeKRL(t, &KRL{Version: 3, Generated: time.Now(), Comment: "test " + tt.name, Revoked: tt.revoked})
			for _, p := range tt.probes {
				f := certs.write(p.ca, p.serial, p.keyID)
				if got := revokedBySSHKeygen(t, krl, f); got != p.revoked {
					t.Errorf("%s serial %d key ID %q: revoked = %v, want %v", p.ca.PublicKey().Type(), p.serial, p.keyID, got, p.revoked)
				}
			}
		})
	}
}

// TestKRLMatchesSSHKeygen builds the same revocations with "ssh-keygen -k"
// and with Marshal, and checks that OpenSSH reads both the same way: the
// same listing ("ssh-keygen -Q -l") and the same answers.
func TestKRLMatchesSSHKeygen(t *testing.T) {
	keygen := sshKeygen(t)
	dir := t.TempDir()
	cas := []ssh.Signer{newCASigner(t, AlgorithmEd25519), newCASigner(t, AlgorithmECDSAP256)}
	// Marshal orders CAs by their encoding; ssh-keygen keeps the order it
	// was given them in. Give it the same order.
	slices.SortFunc(cas, func(a, b ssh.Signer) int { return bytes.Compare(a.PublicKey().Marshal(), b.PublicKey().Marshal()) })
	serials := [][]uint64{
		{1, 2, 3, 4, 9, 100, 101, 1 << 40, math.MaxUint64},
		{7, 8, 1000, 1002, 1004, 5000, 5001, 5002, 5003, 5004},
	}
	ids := [][]string{{"alice"}, nil}

	mine := &KRL{Version: 17, Generated: time.Now(), Comment: "from Go"}
	theirs := filepath.Join(dir, "theirs.krl")
	for i, ca := range cas {
		mine.Revoked = append(mine.Revoked, RevokedSerials{CA: ca.PublicKey(), Serials: serials[i], KeyIDs: ids[i]})
		caFile := filepath.Join(dir, fmt.Sprintf("ca%d.pub", i))
		if err := os.WriteFile(caFile, ssh.MarshalAuthorizedKey(ca.PublicKey()), 0o644); err != nil {
			t.Fatal(err)
		}
		var spec strings.Builder
		for _, s := range serials[i] {
			fmt.Fprintf(&spec, "serial: %d\n", s)
		}
		for _, id := range ids[i] {
			fmt.Fprintf(&spec, "id: %s\n", id)
		}
		specFile := filepath.Join(dir, fmt.Sprintf("spec%d", i))
		if err := os.WriteFile(specFile, []byte(spec.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"-k", "-f", theirs, "-s", caFile, "-z", "17"}
		if i > 0 {
			args = append(args, "-u")
		}
		if out, err := exec.Command(keygen, append(args, specFile)...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %q: %v\n%s", args, err, out)
		}
	}
	ours := writeKRL(t, mine)

	listing := func(krl string) string {
		out, err := exec.Command(keygen, "-Q", "-l", "-f", krl).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh-keygen -Q -l -f %s: %v\n%s", krl, err, out)
		}
		// Drop what legitimately differs: the time and the comment.
		var keep []string
		for _, l := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(l, "# Generated at ") && !strings.HasPrefix(l, "# Comment: ") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	if out, _ := exec.Command(keygen, "-Q", "-l", "-f", ours).CombinedOutput(); !bytes.Contains(out, []byte("# Comment: from Go\n")) {
		t.Errorf("ssh-keygen does not show the comment:\n%s", out)
	}
	if a, b := listing(ours), listing(theirs); a != b || !strings.Contains(a, "# KRL version 17\n") || !strings.Contains(a, "serial: 5000-5004\n") {
		t.Errorf("OpenSSH reads the two KRLs differently:\n--- Marshal\n%s\n--- ssh-keygen -k\n%s", a, b)
	} else {
		t.Logf("both read as:\n%s", a)
	}

	certs := newCertFiles(t)
	for _, ca := range cas {
		for _, s := range []uint64{1, 4, 5, 8, 99, 101, 1001, 1002, 5003, 5005, 1 << 40, math.MaxUint64} {
			f := certs.write(ca, s, "alice")
			if a, b := revokedBySSHKeygen(t, ours, f), revokedBySSHKeygen(t, theirs, f); a != b {
				t.Errorf("%s serial %d: revoked by Marshal's KRL %v, by ssh-keygen's %v", ca.PublicKey().Type(), s, a, b)
			}
		}
	}
}

func TestKRLMarshalDeterministic(t *testing.T) {
	a, b := newCASigner(t, AlgorithmEd25519), newCASigner(t, AlgorithmECDSAP256)
	at := time.Unix(1_800_000_000, 999)
	one := &KRL{Version: 1, Generated: at, Revoked: []RevokedSerials{
		{CA: a.PublicKey(), Serials: []uint64{9, 3, 4, 5, 3}},
		{CA: b.PublicKey(), Serials: []uint64{1}, KeyIDs: []string{"y", "x"}},
		{CA: a.PublicKey(), KeyIDs: []string{"z"}},
	}}
	two := &KRL{Version: 1, Generated: at, Revoked: []RevokedSerials{
		{CA: b.PublicKey(), KeyIDs: []string{"x", "y", "x"}, Serials: []uint64{1, 1}},
		{CA: a.PublicKey(), Serials: []uint64{5, 4, 3, 9}, KeyIDs: []string{"z"}},
		{CA: newCASigner(t, AlgorithmEd25519).PublicKey()}, // nothing revoked: no section
	}}
	x, err := one.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	y, err := two.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatalf("the same revocations encode differently:\n%x\n%x", x, y)
	}

	// The header, byte for byte.
	if want := krlHeader(1, 1_800_000_000, ""); !bytes.HasPrefix(x, want) {
		t.Fatalf("header %x, want %x", x[:min(len(x), len(want))], want)
	}
	empty, err := (&KRL{Comment: "nothing"}).Marshal()
	if want := krlHeader(0, 0, "nothing"); err != nil || !bytes.Equal(empty, want) {
		t.Fatalf("empty KRL: %x, %v; want %x", empty, err, want)
	}
}

func krlHeader(version, generated uint64, comment string) []byte {
	var b []byte
	b = append(b, "SSHKRL\n\x00"...)
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint64(b, version)
	b = binary.BigEndian.AppendUint64(b, generated)
	b = binary.BigEndian.AppendUint64(b, 0)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(comment)))
	return append(b, comment...)
}

func TestKRLRefuses(t *testing.T) {
	ca := newCASigner(t, AlgorithmEd25519)
	cert := &ssh.Certificate{Key: ca.PublicKey(), CertType: ssh.UserCert, ValidPrincipals: []string{"a"}}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		krl  KRL
		want string
	}{
		{"serial 0", KRL{Revoked: []RevokedSerials{{CA: ca.PublicKey(), Serials: []uint64{1, 0}}}}, "serial 0"},
		{"no CA", KRL{Revoked: []RevokedSerials{{Serials: []uint64{1}}}}, "no CA key"},
		{"certificate as CA", KRL{Revoked: []RevokedSerials{{CA: cert, Serials: []uint64{1}}}}, "is a certificate"},
		{"empty key ID", KRL{Revoked: []RevokedSerials{{CA: ca.PublicKey(), KeyIDs: []string{""}}}}, "key ID"},
		{"NUL in key ID", KRL{Revoked: []RevokedSerials{{CA: ca.PublicKey(), KeyIDs: []string{"a\x00b"}}}}, "key ID"},
		{"NUL in comment", KRL{Comment: "a\x00b"}, "comment"},
		{"before 1970", KRL{Generated: time.Unix(-1, 0)}, "before 1970"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.krl.Marshal()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Marshal = %d bytes, %v; want an error about %q", len(b), err, tt.want)
			}
		})
	}
}
