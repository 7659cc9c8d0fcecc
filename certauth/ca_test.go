package certauth

import (
	"bytes"
	"cmp"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/storage"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func createAuthorities(t *testing.T, alg Algorithm) (home string, as *Authorities) {
	t.Helper()
	home = t.TempDir()
	as, err := CreateAuthorities(home, alg)
	if err != nil {
		t.Fatal(err)
	}
	return home, as
}

// snapshot returns every file under dir and its contents.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		files[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestCreateAuthorities(t *testing.T) {
	for _, alg := range []Algorithm{"", AlgorithmEd25519, AlgorithmECDSAP256} {
		t.Run(cmp.Or(string(alg), "default"), func(t *testing.T) {
			home, as := createAuthorities(t, alg)
			wantType := ssh.KeyAlgoED25519
			if alg == AlgorithmECDSAP256 {
				wantType = ssh.KeyAlgoECDSA256
			}
			dir := filepath.Join(home, CADir)
			if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
				t.Fatalf("%s: %v, %v; want a directory with mode 0700", dir, fi.Mode(), err)
			}
			seen := map[string]bool{}
			for _, r := range Roles {
				a := as.Get(r)
				if a == nil || a.Role != r {
					t.Fatalf("Get(%s) = %+v", r, a)
				}
				if got := a.Signer.PublicKey().Type(); got != wantType {
					t.Errorf("%s CA key type %s, want %s", r, got, wantType)
				}
				if len(a.Trusted) != 1 || !sameKey(a.Trusted[0].Key, a.Signer.PublicKey()) || !a.Trusted[0].Until.IsZero() {
					t.Errorf("%s CA trusts %+v, want only its active key", r, a.Trusted)
				}
				if seen[string(a.Signer.PublicKey().Marshal())] {
					t.Errorf("%s CA shares its key with another role", r)
				}
				seen[string(a.Signer.PublicKey().Marshal())] = true
				if a.KeyFile != filepath.Join(dir, r.KeyFile()) {
					t.Errorf("%s CA key file %s", r, a.KeyFile)
				}
				for file, mode := range map[string]os.FileMode{r.KeyFile(): 0o600, r.KeyFile() + ".pub": 0o644} {
					fi, err := os.Stat(filepath.Join(dir, file))
					if err != nil || fi.Mode().Perm() != mode {
						t.Errorf("%s: mode %v, %v; want %v", file, fi.Mode().Perm(), err, mode)
					}
				}
				pub, err := os.ReadFile(filepath.Join(dir, r.KeyFile()+".pub"))
				want := a.AuthorizedKeys()[0] + "\n"
				if err != nil || string(pub) != want {
					t.Errorf("%s.pub = %q, want %q", r.KeyFile(), pub, want)
				}
				if !strings.HasPrefix(want, wantType+" AAAA") || !strings.HasSuffix(want, " bastion-"+string(r)+"-ca\n") {
					t.Errorf("authorized key line %q", want)
				}
			}
			if as.Get("nobody") != nil {
				t.Error("Get of an unknown role is not nil")
			}
			if lines := as.KnownHostsLines(""); lines == nil || len(lines) != 0 {
				t.Errorf("known_hosts lines for no host: %q", lines)
			}
			lines := as.KnownHostsLines("*")
			if len(lines) != 1 || lines[0] != "@cert-authority * "+as.Host.AuthorizedKeys()[0] {
				t.Errorf("known_hosts lines %q", lines)
			}
			if lines := as.KnownHostsLines("*.example.com"); !strings.HasPrefix(lines[0], "@cert-authority *.example.com "+wantType+" ") {
				t.Errorf("known_hosts lines %q", lines)
			}
			entries, _ := os.ReadDir(home)
			if len(entries) != 1 {
				t.Errorf("home holds %d entries, want only %s (no temporary directory left)", len(entries), CADir)
			}

			loaded, err := LoadAuthorities(home, t0)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range Roles {
				if !sameKey(loaded.Get(r).Signer.PublicKey(), as.Get(r).Signer.PublicKey()) {
					t.Errorf("%s CA loads another key", r)
				}
			}
		})
	}
}

func TestCreateAuthoritiesRefusesOverwrite(t *testing.T) {
	home, _ := createAuthorities(t, "")
	before := snapshot(t, home)
	_, err := CreateAuthorities(home, AlgorithmECDSAP256)
	if !errors.Is(err, ErrKeyExists) {
		t.Fatalf("second create: %v, want ErrKeyExists", err)
	}
	if after := snapshot(t, home); len(after) != len(before) {
		t.Fatalf("files changed: %d before, %d after", len(before), len(after))
	} else {
		for p, b := range before {
			if after[p] != b {
				t.Errorf("%s changed", p)
			}
		}
	}

	// Any CA directory at all blocks creation, even one with a single file.
	home = t.TempDir()
	os.Mkdir(filepath.Join(home, CADir), 0o700)
	os.WriteFile(filepath.Join(home, CADir, "host_ca"), []byte("mine"), 0o600)
	if _, err := CreateAuthorities(home, ""); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("create over a partial directory: %v, want ErrKeyExists", err)
	}
	if b, _ := os.ReadFile(filepath.Join(home, CADir, "host_ca")); string(b) != "mine" {
		t.Fatal("an existing file changed")
	}
	if _, err := CreateAuthorities(t.TempDir(), "rsa"); err == nil {
		t.Fatal("created RSA authorities")
	}
}

func TestLoadAuthoritiesRefuses(t *testing.T) {
	_, err := LoadAuthorities(t.TempDir(), t0)
	if !errors.Is(err, ErrNoAuthorities) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("empty home: %v, want ErrNoAuthorities and fs.ErrNotExist", err)
	}

	p384Key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384PEM, _ := ssh.MarshalPrivateKey(p384Key, "")
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edPub, _ := ssh.NewPublicKey(edKey.Public())

	tests := []struct {
		name   string
		break_ func(dir string) error
		want   string // in the error message
		notExt bool   // the error matches fs.ErrNotExist but not ErrNoAuthorities
	}{
		{"group-readable key", func(dir string) error {
			return os.Chmod(filepath.Join(dir, "user_ca"), 0o640)
		}, "user_ca is readable by others (mode -rw-r-----): refusing to use it; chmod 600 it", false},
		{"world-readable key", func(dir string) error {
			return os.Chmod(filepath.Join(dir, "target_ca"), 0o604)
		}, "target_ca is readable by others (mode -rw----r--)", false},
		{"missing key", func(dir string) error {
			return os.Remove(filepath.Join(dir, "target_ca"))
		}, "target_ca: no such file", true},
		{"missing public key", func(dir string) error {
			return os.Remove(filepath.Join(dir, "host_ca.pub"))
		}, "host_ca.pub: no such file", true},
		{"garbage key", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "user_ca"), []byte("not a key\n"), 0o600)
		}, "user_ca: ssh: no key found", false},
		{"P-384 key", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "user_ca"), pem.EncodeToMemory(p384PEM), 0o600)
		}, "user_ca holds a ecdsa-sha2-nistp384 key: a CA key is ed25519 or ecdsa-p256", false},
		{"encrypted key", func(dir string) error {
			// Slow under -race: the passphrase's KDF is bcrypt.
			encPEM, err := ssh.MarshalPrivateKeyWithPassphrase(edKey, "", []byte("secret"))
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "host_ca"), pem.EncodeToMemory(encPEM), 0o600)
		}, "host_ca is encrypted", false},
		{"public key of another key", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "user_ca.pub"), ssh.MarshalAuthorizedKey(edPub), 0o644)
		}, "user_ca.pub does not hold the public key of", false},
		{"retired key without a date", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "user_ca.retired-tomorrow-00000000.pub"), ssh.MarshalAuthorizedKey(edPub), 0o644)
		}, "user_ca.retired-tomorrow-00000000.pub: the name does not say until when", false},
		{"retired key file without a key", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "user_ca.retired-20261128T120000Z-00000000.pub"), []byte("x\n"), 0o644)
		}, "user_ca.retired-20261128T120000Z-00000000.pub: ssh: no key found", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home, _ := createAuthorities(t, "")
			if err := tt.break_(filepath.Join(home, CADir)); err != nil {
				t.Fatal(err)
			}
			_, err := LoadAuthorities(home, t0)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("load: %v, want an error containing %q", err, tt.want)
			}
			if tt.notExt != errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrNoAuthorities) {
				t.Errorf("load: %v: matches fs.ErrNotExist %v, ErrNoAuthorities %v", err, errors.Is(err, fs.ErrNotExist), errors.Is(err, ErrNoAuthorities))
			}
		})
	}
}

func TestRotateAuthority(t *testing.T) {
	home, before := createAuthorities(t, "")
	dir := filepath.Join(home, CADir)
	oldPriv, _ := os.ReadFile(filepath.Join(dir, "user_ca"))
	old := before.User.Signer.PublicKey()

	a, err := RotateAuthority(home, RoleUser, "", 24*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	cur := a.Signer.PublicKey()
	until := t0.Add(24 * time.Hour)
	if sameKey(cur, old) || a.Algorithm() != AlgorithmEd25519 {
		t.Fatalf("rotation kept the key or changed its algorithm (%s)", a.Algorithm())
	}
	if len(a.Trusted) != 2 || !sameKey(a.Trusted[0].Key, cur) || !sameKey(a.Trusted[1].Key, old) || !a.Trusted[1].Until.Equal(until) {
		t.Fatalf("trusted after rotation: %+v", a.Trusted)
	}
	for _, tt := range []struct {
		key  ssh.PublicKey
		at   time.Time
		want bool
	}{
		{cur, t0, true},
		{cur, t0.Add(1000 * time.Hour), true},
		{old, t0, true},
		{old, until.Add(-time.Second), true},
		{old, until, false},
		{before.Host.Signer.PublicKey(), t0, false},
		{nil, t0, false},
	} {
		if got := a.Trusts(tt.key, tt.at); got != tt.want {
			t.Errorf("Trusts(%v at %v) = %v, want %v", tt.key != nil && sameKey(tt.key, old), tt.at, got, tt.want)
		}
	}
	lines := a.AuthorizedKeys()
	if len(lines) != 2 || !strings.HasSuffix(lines[0], " bastion-user-ca") ||
		!strings.HasSuffix(lines[1], " bastion-user-ca (retired, trusted until 2026-11-28T12:00:00Z)") {
		t.Errorf("authorized keys %q", lines)
	}

	// The old private key is gone from the disk; its public key is kept in
	// a file that says until when.
	for p, b := range snapshot(t, home) {
		if strings.Contains(b, string(oldPriv)) {
			t.Errorf("%s still holds the old private key", p)
		}
	}
	retired := filepath.Join(dir, retiredName(RoleUser, old, until))
	if !strings.HasPrefix(filepath.Base(retired), "user_ca.retired-20261128T120000Z-") {
		t.Errorf("retired key file %s", retired)
	}
	if k, err := readPublicKey(retired); err != nil || !sameKey(k, old) {
		t.Errorf("retired key file: %v", err)
	}
	if k, err := readPublicKey(filepath.Join(dir, "user_ca.pub")); err != nil || !sameKey(k, cur) {
		t.Errorf("user_ca.pub does not hold the new key: %v", err)
	}

	// Loading agrees, before and after the grace period; the other roles
	// are untouched.
	for _, tt := range []struct {
		at      time.Time
		trusted int
	}{{t0.Add(23 * time.Hour), 2}, {until, 1}, {until.Add(time.Hour), 1}} {
		as, err := LoadAuthorities(home, tt.at)
		if err != nil {
			t.Fatal(err)
		}
		if len(as.User.Trusted) != tt.trusted || !sameKey(as.User.Signer.PublicKey(), cur) {
			t.Errorf("at %v: user CA trusts %d keys, want %d", tt.at, len(as.User.Trusted), tt.trusted)
		}
		if as.User.Trusts(old, tt.at) != (tt.trusted == 2) {
			t.Errorf("at %v: the old key is trusted: %v", tt.at, !(tt.trusted == 2))
		}
		if !sameKey(as.Host.Signer.PublicKey(), before.Host.Signer.PublicKey()) || !sameKey(as.Target.Signer.PublicKey(), before.Target.Signer.PublicKey()) {
			t.Error("rotating the user CA changed another CA")
		}
	}

	// A signature by the new key.
	cert := &ssh.Certificate{Key: before.Host.Signer.PublicKey(), CertType: ssh.UserCert, ValidPrincipals: []string{"alice"}, ValidBefore: ssh.CertTimeInfinity}
	if err := a.Sign(cert); err != nil {
		t.Fatal(err)
	}
	if !sameKey(cert.SignatureKey, cur) || cert.Signature.Format != ssh.KeyAlgoED25519 {
		t.Errorf("signed by %s with %s", ssh.FingerprintSHA256(cert.SignatureKey), cert.Signature.Format)
	}

	// A second rotation, to ECDSA, after the first grace period: the
	// expired retired file is pruned, the key of the first rotation retired.
	later := until.Add(time.Minute)
	b, err := RotateAuthority(home, RoleUser, AlgorithmECDSAP256, time.Hour, later)
	if err != nil {
		t.Fatal(err)
	}
	if b.Algorithm() != AlgorithmECDSAP256 || len(b.Trusted) != 2 || !sameKey(b.Trusted[1].Key, cur) {
		t.Fatalf("second rotation: %s, trusted %+v", b.Algorithm(), b.Trusted)
	}
	if _, err := os.Stat(retired); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the expired retired key was not pruned: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "user_ca.retired-*")); len(m) != 1 {
		t.Errorf("retired files %q, want one", m)
	}
	// And a third, which keeps the algorithm and keeps both retired keys.
	c, err := RotateAuthority(home, RoleUser, "", 2*time.Hour, later.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if c.Algorithm() != AlgorithmECDSAP256 || len(c.Trusted) != 3 || !c.Trusted[1].Until.After(c.Trusted[2].Until) {
		t.Fatalf("third rotation: %s, trusted %+v", c.Algorithm(), c.Trusted)
	}
}

func TestRotateAuthorityRefuses(t *testing.T) {
	home, _ := createAuthorities(t, "")
	before := snapshot(t, home)
	for _, tt := range []struct {
		name  string
		role  Role
		alg   Algorithm
		grace time.Duration
		want  string
	}{
		{"zero grace", RoleUser, "", 0, "grace period 0s"},
		{"negative grace", RoleUser, "", -time.Hour, "grace period -1h0m0s"},
		{"sub-second grace", RoleUser, "", time.Millisecond, "at least 1s"},
		{"absurd grace", RoleHost, "", 10 * 365 * 24 * time.Hour, "at most 2160h0m0s"},
		{"unknown role", "admin", "", time.Hour, `unknown CA role "admin"`},
		{"unknown algorithm", RoleTarget, "rsa", time.Hour, `unknown CA algorithm "rsa"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RotateAuthority(home, tt.role, tt.alg, tt.grace, t0)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("rotate: %v, want an error containing %q", err, tt.want)
			}
		})
	}
	after := snapshot(t, home)
	if len(after) != len(before) {
		t.Fatalf("refused rotations changed the files: %d before, %d after", len(before), len(after))
	}
	for p, b := range before {
		if after[p] != b {
			t.Errorf("%s changed", p)
		}
	}
	if _, err := RotateAuthority(t.TempDir(), RoleUser, "", time.Hour, t0); !errors.Is(err, ErrNoAuthorities) {
		t.Errorf("rotate without authorities: %v, want ErrNoAuthorities", err)
	}
}

// TestRotateAuthorityInterrupted puts the files in the states a crash can
// leave a rotation in and checks that each loads and rotates again.
func TestRotateAuthorityInterrupted(t *testing.T) {
	home, before := createAuthorities(t, "")
	dir := filepath.Join(home, CADir)
	oldPub, _ := os.ReadFile(filepath.Join(dir, "target_ca.pub"))
	if _, err := RotateAuthority(home, RoleTarget, "", time.Hour, t0); err != nil {
		t.Fatal(err)
	}

	// Crash after the new private key, before its public copy: the copy
	// still holds the retired key. The private key decides.
	if err := os.WriteFile(filepath.Join(dir, "target_ca.pub"), oldPub, 0o644); err != nil {
		t.Fatal(err)
	}
	// And an abandoned temporary file of an earlier attempt.
	leftover := filepath.Join(dir, ".target_ca.tmp-123")
	if err := os.WriteFile(leftover, []byte("half a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	as, err := LoadAuthorities(home, t0)
	if err != nil {
		t.Fatalf("load after an interrupted rotation: %v", err)
	}
	if sameKey(as.Target.Signer.PublicKey(), before.Target.Signer.PublicKey()) || len(as.Target.Trusted) != 2 {
		t.Fatalf("after an interrupted rotation: trusted %+v", as.Target.Trusted)
	}
	a, err := RotateAuthority(home, RoleTarget, "", time.Hour, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := readPublicKey(filepath.Join(dir, "target_ca.pub")); !sameKey(k, a.Signer.PublicKey()) {
		t.Error("the next rotation did not rewrite target_ca.pub")
	}
	if _, err := os.Stat(leftover); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the leftover temporary file is still there: %v", err)
	}

	// Crash after writing the retired file, before the new private key:
	// the active key is also a retired one, and is listed once.
	home, before = createAuthorities(t, "")
	old := before.Host.Signer.PublicKey()
	name := retiredName(RoleHost, old, t0.Add(time.Hour))
	if err := storage.WriteFileAtomic(filepath.Join(home, CADir, name), ssh.MarshalAuthorizedKey(old), 0o644); err != nil {
		t.Fatal(err)
	}
	as, err = LoadAuthorities(home, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(as.Host.Trusted) != 1 || !as.Host.Trusted[0].Until.IsZero() {
		t.Errorf("the active key listed as retired too: %+v", as.Host.Trusted)
	}
}

func TestRotateAuthorityLocked(t *testing.T) {
	home, _ := createAuthorities(t, "")
	unlock, err := lockDir(filepath.Join(home, CADir))
	if err != nil {
		t.Fatal(err)
	}
	_, err = RotateAuthority(home, RoleUser, "", time.Hour, t0)
	unlock()
	if err == nil || !strings.Contains(err.Error(), "another rotation is in progress") {
		t.Fatalf("rotate while locked: %v", err)
	}
	if _, err := RotateAuthority(home, RoleUser, "", time.Hour, t0); err != nil {
		t.Fatalf("rotate after unlock: %v", err)
	}
}

func TestSignChecksCertType(t *testing.T) {
	_, as := createAuthorities(t, AlgorithmECDSAP256)
	key := as.Target.Signer.PublicKey()
	for _, tt := range []struct {
		role     Role
		certType uint32
		ok       bool
	}{
		{RoleUser, ssh.UserCert, true},
		{RoleTarget, ssh.UserCert, true},
		{RoleHost, ssh.HostCert, true},
		{RoleUser, ssh.HostCert, false},
		{RoleTarget, ssh.HostCert, false},
		{RoleHost, ssh.UserCert, false},
	} {
		a := as.Get(tt.role)
		cert := &ssh.Certificate{Key: key, CertType: tt.certType, ValidPrincipals: []string{"x"}, ValidBefore: ssh.CertTimeInfinity}
		err := a.Sign(cert)
		if (err == nil) != tt.ok {
			t.Errorf("%s CA signing cert type %d: %v", tt.role, tt.certType, err)
			continue
		}
		if !tt.ok {
			continue
		}
		if cert.Signature.Format != ssh.KeyAlgoECDSA256 || !sameKey(cert.SignatureKey, a.Signer.PublicKey()) {
			t.Errorf("%s CA signed with %s", tt.role, cert.Signature.Format)
		}
		checker := &ssh.CertChecker{IsUserAuthority: func(k ssh.PublicKey) bool { return a.Trusts(k, time.Now()) }}
		if tt.certType == ssh.UserCert {
			if _, err := checker.Authenticate(connMeta("x"), cert); err != nil {
				t.Errorf("%s CA: certificate not accepted: %v", tt.role, err)
			}
		}
	}
}

type connMeta string

func (c connMeta) User() string        { return string(c) }
func (connMeta) SessionID() []byte     { return nil }
func (connMeta) ClientVersion() []byte { return nil }
func (connMeta) ServerVersion() []byte { return nil }
func (connMeta) RemoteAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (connMeta) LocalAddr() net.Addr   { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestSSHKeygenReadsKeys checks that OpenSSH reads the files CreateAuthorities
// and RotateAuthority write: "ssh-keygen -y" derives the public key from the
// private key file, "ssh-keygen -l" fingerprints both.
func TestSSHKeygenReadsKeys(t *testing.T) {
	keygen := sshKeygen(t)
	for _, alg := range Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			home, _ := createAuthorities(t, alg)
			if _, err := RotateAuthority(home, RoleHost, alg, time.Hour, time.Now()); err != nil {
				t.Fatal(err)
			}
			as, err := LoadAuthorities(home, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range Roles {
				a := as.Get(r)
				out, err := exec.Command(keygen, "-y", "-f", a.KeyFile).CombinedOutput()
				if err != nil {
					t.Fatalf("ssh-keygen -y -f %s: %v\n%s", a.KeyFile, err, out)
				}
				if k, _, _, _, err := ssh.ParseAuthorizedKey(out); err != nil || !sameKey(k, a.Signer.PublicKey()) {
					t.Errorf("ssh-keygen -y -f %s gives another key: %s", a.KeyFile, out)
				}
				fp := ssh.FingerprintSHA256(a.Signer.PublicKey())
				for _, f := range []string{a.KeyFile, a.KeyFile + ".pub"} {
					out, err := exec.Command(keygen, "-l", "-f", f).CombinedOutput()
					if err != nil || !bytes.Contains(out, []byte(" "+fp+" ")) {
						t.Errorf("ssh-keygen -l -f %s: %v: %s, want %s", f, err, out, fp)
					}
				}
			}
			retired, _ := filepath.Glob(filepath.Join(home, CADir, "host_ca.retired-*.pub"))
			if len(retired) != 1 {
				t.Fatalf("retired host keys %q", retired)
			}
			fp := ssh.FingerprintSHA256(as.Host.Trusted[1].Key)
			if out, err := exec.Command(keygen, "-l", "-f", retired[0]).CombinedOutput(); err != nil || !bytes.Contains(out, []byte(" "+fp+" ")) {
				t.Errorf("ssh-keygen -l -f %s: %v: %s, want %s", retired[0], err, out, fp)
			}
		})
	}
}

func TestParseRetiredName(t *testing.T) {
	for _, tt := range []struct {
		name  string
		until time.Time
		ok    bool
		err   bool
	}{
		{"user_ca.retired-20261128T120000Z-0a1b2c3d.pub", time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC), true, false},
		{"user_ca.retired-20261128T120000Z.pub", time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC), true, false},
		{"user_ca.pub", time.Time{}, false, false},
		{"host_ca.retired-20261128T120000Z-0a1b2c3d.pub", time.Time{}, false, false},
		{".user_ca.retired-20261128T120000Z-0a1b2c3d.pub.tmp-1", time.Time{}, false, false},
		{"user_ca.retired-20261128T120000Z-0a1b2c3d.pub~", time.Time{}, false, false},
		{"user_ca.retired-2026-11-28-0a1b2c3d.pub", time.Time{}, false, true},
	} {
		until, ok, err := parseRetiredName(RoleUser, tt.name)
		if ok != tt.ok || (err != nil) != tt.err || !until.Equal(tt.until) {
			t.Errorf("parseRetiredName(%q) = %v, %v, %v", tt.name, until, ok, err)
		}
	}
}
