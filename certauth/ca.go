package certauth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/bastionhq/bastion/storage"
)

// An Algorithm is the key type of a certificate authority.
type Algorithm string

const (
	// AlgorithmEd25519 signs with ssh-ed25519. It is the default.
	AlgorithmEd25519 Algorithm = "ed25519"
	// AlgorithmECDSAP256 signs with ecdsa-sha2-nistp256, for peers that
	// must use NIST curves.
	AlgorithmECDSAP256 Algorithm = "ecdsa-p256"
)

// Algorithms lists the algorithms a CA may use, the default first.
var Algorithms = []Algorithm{AlgorithmEd25519, AlgorithmECDSAP256}

// ParseAlgorithm returns the algorithm named s; "" is the default.
func ParseAlgorithm(s string) (Algorithm, error) {
	if s == "" {
		return AlgorithmEd25519, nil
	}
	if a := Algorithm(s); slices.Contains(Algorithms, a) {
		return a, nil
	}
	return "", fmt.Errorf("unknown CA algorithm %q (want ed25519 or ecdsa-p256)", s)
}

// A Role says what a certificate authority signs and who trusts it.
type Role string

const (
	// RoleUser signs the certificates users get for their own keys. The
	// bastion's SSH listener trusts it, and so does any sshd that users
	// reach directly (TrustedUserCAKeys).
	RoleUser Role = "user"
	// RoleHost signs host certificates for the bastion. Clients trust it
	// with an "@cert-authority" line in known_hosts.
	RoleHost Role = "host"
	// RoleTarget signs the certificates the bastion itself presents when
	// it logs in to a target on a user's behalf. Targets trust it
	// (TrustedUserCAKeys), and only it: a user's own certificate does not
	// open a target.
	RoleTarget Role = "target"
)

// Roles lists every role, in the order bastion prints them.
var Roles = []Role{RoleUser, RoleHost, RoleTarget}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	if r := Role(s); slices.Contains(Roles, r) {
		return r, nil
	}
	return "", fmt.Errorf("unknown CA role %q (want user, host or target)", s)
}

// CADir is the directory, inside the home directory, that holds the
// certificate authorities' keys.
const CADir = "ca"

// KeyFile is the name of the role's active private key inside CADir;
// its public key is KeyFile()+".pub".
func (r Role) KeyFile() string { return string(r) + "_ca" }

// comment is the comment of the role's keys in OpenSSH files.
func (r Role) comment() string { return "bastion-" + string(r) + "-ca" }

// MaxGrace is the longest a retired CA key stays trusted after a rotation.
const MaxGrace = 90 * 24 * time.Hour

// ErrNoAuthorities means the home directory has no certificate
// authorities. It matches fs.ErrNotExist too.
var ErrNoAuthorities error = noAuthoritiesError{}

type noAuthoritiesError struct{}

func (noAuthoritiesError) Error() string        { return "no certificate authorities" }
func (noAuthoritiesError) Is(target error) bool { return target == fs.ErrNotExist }

// Authorities are a bastion's three certificate authorities.
type Authorities struct {
	User, Host, Target *Authority
}

// Get returns the authority of role r, or nil for an unknown role.
func (a *Authorities) Get(r Role) *Authority {
	switch r {
	case RoleUser:
		return a.User
	case RoleHost:
		return a.Host
	case RoleTarget:
		return a.Target
	}
	return nil
}

// KnownHostsLines returns one "@cert-authority PATTERN KEY" line for each
// trusted host CA key, for clients' known_hosts: PATTERN names the hosts
// the host CA may vouch for. An empty pattern trusts it for no host, and
// gives no lines (an empty list, never nil: the API's JSON says []).
func (a *Authorities) KnownHostsLines(pattern string) []string {
	lines := []string{}
	if pattern == "" {
		return lines
	}
	for _, k := range a.Host.AuthorizedKeys() {
		lines = append(lines, "@cert-authority "+pattern+" "+k)
	}
	return lines
}

// An Authority is one certificate authority as loaded at some time.
type Authority struct {
	Role Role
	// Signer is the active key. It signs with ssh-ed25519 or
	// ecdsa-sha2-nistp256.
	Signer ssh.Signer
	// Trusted are the keys certificates of this role may be signed by:
	// the active key first, then the retired keys whose grace period had
	// not ended when the authority was loaded, latest end first.
	Trusted []TrustedKey
	// KeyFile is the path of the active private key.
	KeyFile string
}

// A TrustedKey is a CA public key and how long it stays trusted.
type TrustedKey struct {
	Key ssh.PublicKey
	// Until is when a retired key stops being trusted; it is zero for the
	// active key, which has no end.
	Until time.Time
}

// Algorithm returns the algorithm of the active key.
func (a *Authority) Algorithm() Algorithm {
	return algorithmOf(a.Signer.PublicKey())
}

// Trusts reports whether k is one of a's keys and still trusted at now.
// It compares every trusted key in constant time, so the answer's timing
// does not tell which key matched.
func (a *Authority) Trusts(k ssh.PublicKey, now time.Time) bool {
	if k == nil {
		return false
	}
	blob := k.Marshal()
	trusted := 0
	for _, t := range a.Trusted {
		same := subtle.ConstantTimeCompare(blob, t.Key.Marshal())
		live := 0
		if t.Until.IsZero() || now.Before(t.Until) {
			live = 1
		}
		trusted |= same & live
	}
	return trusted == 1
}

// Sign signs cert with the active key, setting its nonce and SignatureKey.
// The user and target authorities sign only user certificates, the host
// authority only host certificates.
func (a *Authority) Sign(cert *ssh.Certificate) error {
	want := uint32(ssh.UserCert)
	if a.Role == RoleHost {
		want = ssh.HostCert
	}
	if cert.CertType != want {
		kind := fmt.Sprintf("type %d", cert.CertType)
		switch cert.CertType {
		case ssh.UserCert:
			kind = "user"
		case ssh.HostCert:
			kind = "host"
		}
		return fmt.Errorf("the %s CA does not sign %s certificates", a.Role, kind)
	}
	return cert.SignCert(rand.Reader, a.Signer)
}

// AuthorizedKeys returns each trusted key as an authorized_keys line, the
// form of sshd's TrustedUserCAKeys file: "ssh-ed25519 AAAA… bastion-user-ca".
// A retired key's comment says until when it is trusted.
func (a *Authority) AuthorizedKeys() []string {
	var lines []string
	for _, t := range a.Trusted {
		lines = append(lines, authorizedLine(t.Key, a.Role, t.Until))
	}
	return lines
}

func authorizedLine(k ssh.PublicKey, r Role, until time.Time) string {
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(k)), "\n") + " " + r.comment()
	if !until.IsZero() {
		line += " (retired, trusted until " + until.UTC().Format(time.RFC3339) + ")"
	}
	return line
}

// CreateAuthorities generates the user, host and target authorities with
// algorithm alg ("" is ed25519) and writes them into home's CADir. It
// writes every file into a new temporary directory, syncs it, and renames
// it to CADir: a crash leaves either all three authorities or none. If
// CADir exists, it fails with ErrKeyExists and changes nothing.
func CreateAuthorities(home string, alg Algorithm) (*Authorities, error) {
	alg, err := ParseAlgorithm(string(alg))
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(home, CADir)
	if _, err := os.Lstat(dir); err == nil {
		return nil, fmt.Errorf("%s: %w", dir, ErrKeyExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	tmp, err := os.MkdirTemp(home, ".ca-new-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // nothing left to remove once renamed
	for _, r := range Roles {
		key, err := generateKey(alg)
		if err != nil {
			return nil, err
		}
		priv, pub, err := encodeKey(key, r)
		if err != nil {
			return nil, err
		}
		if err := writeNew(filepath.Join(tmp, r.KeyFile()), string(priv), 0o600); err != nil {
			return nil, err
		}
		if err := writeNew(filepath.Join(tmp, r.KeyFile()+".pub"), authorizedLine(pub, r, time.Time{})+"\n", 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another "ca init" won the race: its directory is not empty.
		if errors.Is(err, fs.ErrExist) || errors.Is(err, unix.ENOTEMPTY) {
			return nil, fmt.Errorf("%s: %w", dir, ErrKeyExists)
		}
		return nil, err
	}
	if err := storage.SyncDir(home); err != nil {
		return nil, err
	}
	return LoadAuthorities(home, time.Now())
}

// LoadAuthorities reads the three authorities from home's CADir, trusting
// the retired keys whose grace period has not ended at now. Without CADir
// it returns an error matching ErrNoAuthorities and fs.ErrNotExist. It
// refuses a private key that others may read, and names the file in every
// error.
func LoadAuthorities(home string, now time.Time) (*Authorities, error) {
	dir := filepath.Join(home, CADir)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoAuthorities, home)
	} else if err != nil {
		return nil, err
	}
	var as Authorities
	for _, r := range Roles {
		a, err := loadAuthority(dir, r, now)
		if err != nil {
			return nil, err
		}
		switch r {
		case RoleUser:
			as.User = a
		case RoleHost:
			as.Host = a
		case RoleTarget:
			as.Target = a
		}
	}
	return &as, nil
}

func loadAuthority(dir string, r Role, now time.Time) (*Authority, error) {
	keyPath := filepath.Join(dir, r.KeyFile())
	signer, err := readPrivateKey(keyPath)
	if err != nil {
		return nil, err
	}
	active := signer.PublicKey()
	retired, err := readRetired(dir, r)
	if err != nil {
		return nil, err
	}
	pubPath := keyPath + ".pub"
	pub, err := readPublicKey(pubPath)
	if err != nil {
		return nil, err
	}
	// The private key is what signs. Its public copy may lag behind it
	// only where a crash cut a rotation short after the new private key
	// was in place: the copy then holds the retired key, which has a
	// retired file. The next rotation rewrites the copy.
	if !sameKey(pub, active) && !slices.ContainsFunc(retired, func(t TrustedKey) bool { return sameKey(t.Key, pub) }) {
		return nil, fmt.Errorf("%s does not hold the public key of %s: restore the pair from the same backup", pubPath, keyPath)
	}

	a := &Authority{Role: r, Signer: signer, Trusted: []TrustedKey{{Key: active}}, KeyFile: keyPath}
	// A key retired more than once keeps its latest end.
	slices.SortStableFunc(retired, func(x, y TrustedKey) int { return y.Until.Compare(x.Until) })
	for _, t := range retired {
		if !now.Before(t.Until) || slices.ContainsFunc(a.Trusted, func(u TrustedKey) bool { return sameKey(u.Key, t.Key) }) {
			continue
		}
		a.Trusted = append(a.Trusted, t)
	}
	return a, nil
}

// readPrivateKey reads a CA private key in OpenSSH format, refusing one
// that anyone but its owner may access.
func readPrivateKey(path string) (ssh.Signer, error) {
	b, err := storage.ReadPrivateFile(path)
	if err != nil {
		return nil, err
	}
	raw, err := ssh.ParseRawPrivateKey(b)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("%s is encrypted: a CA key must be readable without a passphrase", path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	signer, err := ssh.NewSignerFromKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if algorithmOf(signer.PublicKey()) == "" {
		return nil, fmt.Errorf("%s holds a %s key: a CA key is ed25519 or ecdsa-p256", path, signer.PublicKey().Type())
	}
	return signer, nil
}

// readPublicKey reads the first key of an authorized_keys-format file.
func readPublicKey(path string) (ssh.PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := storage.ReadKeyFile(f)
	if err != nil {
		return nil, err
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if algorithmOf(k) == "" {
		return nil, fmt.Errorf("%s holds a %s key: a CA key is ed25519 or ecdsa-p256", path, k.Type())
	}
	return k, nil
}

// Retired public keys are kept in CADir as
//
//	ROLE_ca.retired-UNTIL-HASH.pub
//
// where UNTIL is the end of the grace period in UTC (20261128T120000Z) and
// HASH the first 8 hex digits of the SHA-256 of the key's wire encoding,
// so two keys retired in the same second get two files.
const untilLayout = "20060102T150405Z"

func retiredPrefix(r Role) string { return r.KeyFile() + ".retired-" }

func retiredName(r Role, k ssh.PublicKey, until time.Time) string {
	sum := sha256.Sum256(k.Marshal())
	return fmt.Sprintf("%s%s-%x.pub", retiredPrefix(r), until.UTC().Format(untilLayout), sum[:4])
}

// parseRetiredName returns the end of the grace period a retired key's
// file name records; ok is false for a name that is not a retired key of r.
func parseRetiredName(r Role, name string) (until time.Time, ok bool, err error) {
	rest, ok := strings.CutPrefix(name, retiredPrefix(r))
	if !ok {
		return time.Time{}, false, nil
	}
	rest, ok = strings.CutSuffix(rest, ".pub")
	if !ok {
		return time.Time{}, false, nil
	}
	stamp, _, _ := strings.Cut(rest, "-")
	until, err = time.Parse(untilLayout, stamp)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("retired key %s: the name does not say until when it is trusted (want %s%s-HASH.pub)", name, retiredPrefix(r), untilLayout)
	}
	return until, true, nil
}

// readRetired returns every retired key of r in dir, expired or not.
func readRetired(dir string, r Role) ([]TrustedKey, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var keys []TrustedKey
	for _, e := range entries {
		until, ok, err := parseRetiredName(r, e.Name())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		if !ok {
			continue
		}
		k, err := readPublicKey(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		keys = append(keys, TrustedKey{Key: k, Until: until})
	}
	return keys, nil
}

// RotateAuthority replaces the active key of role's authority with a new
// key of algorithm alg ("" keeps the current algorithm). The old public
// key stays trusted, as a retired key, until now+grace (rounded up to the
// second); its private key is gone, so it never signs again. grace must be
// at least a second and at most MaxGrace.
//
// The steps are ordered so that a crash at any point leaves a working
// authority: first the retired file of the old key is written, then the
// new private key is renamed over the old one (the commit point), then the
// public copy is rewritten and expired retired files of the role are
// removed. Every file is written to a temporary name, synced and renamed.
// Concurrent rotations are serialized with a lock on CADir.
func RotateAuthority(home string, role Role, alg Algorithm, grace time.Duration, now time.Time) (*Authority, error) {
	if _, err := ParseRole(string(role)); err != nil {
		return nil, err
	}
	if grace < time.Second || grace > MaxGrace {
		return nil, fmt.Errorf("grace period %v: want at least 1s and at most %v", grace, MaxGrace)
	}
	dir := filepath.Join(home, CADir)
	unlock, err := lockDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoAuthorities, home)
	}
	if err != nil {
		return nil, err
	}
	defer unlock()
	removeTemporary(dir, role)

	cur, err := loadAuthority(dir, role, now)
	if err != nil {
		return nil, err
	}
	if alg == "" {
		alg = cur.Algorithm()
	}
	if alg, err = ParseAlgorithm(string(alg)); err != nil {
		return nil, err
	}
	key, err := generateKey(alg)
	if err != nil {
		return nil, err
	}
	priv, pub, err := encodeKey(key, role)
	if err != nil {
		return nil, err
	}

	old := cur.Signer.PublicKey()
	until := now.Add(grace).UTC()
	if t := until.Truncate(time.Second); t.Before(until) {
		until = t.Add(time.Second)
	}
	if err := storage.WriteFileAtomic(filepath.Join(dir, retiredName(role, old, until)), []byte(authorizedLine(old, role, until)+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("retire the %s CA key: %w", role, err)
	}
	if err := storage.WriteFileAtomic(cur.KeyFile, priv, 0o600); err != nil {
		return nil, fmt.Errorf("write the new %s CA key: %w", role, err)
	}
	if err := storage.WriteFileAtomic(cur.KeyFile+".pub", []byte(authorizedLine(pub, role, time.Time{})+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write the new %s CA public key: %w", role, err)
	}
	if err := pruneRetired(dir, role, now); err != nil {
		return nil, err
	}
	return loadAuthority(dir, role, now)
}

// pruneRetired removes the retired keys of r whose grace period ended.
func pruneRetired(dir string, r Role, now time.Time) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	removed := false
	for _, e := range entries {
		until, ok, err := parseRetiredName(r, e.Name())
		if err != nil || !ok || now.Before(until) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
		removed = true
	}
	if removed {
		return storage.SyncDir(dir)
	}
	return nil
}

// removeTemporary removes what an interrupted WriteFileAtomic of r's files
// left behind, a new private key possibly among it.
func removeTemporary(dir string, r Role) {
	leftovers, _ := filepath.Glob(filepath.Join(dir, "."+r.KeyFile()+"*.tmp-*"))
	for _, p := range leftovers {
		os.Remove(p)
	}
}

// lockDir takes an exclusive flock on dir, which the kernel drops if the
// process dies; it fails at once if another process holds it.
func lockDir(dir string) (unlock func(), err error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		d.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: another rotation is in progress", dir)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { d.Close() }, nil
}

func generateKey(alg Algorithm) (crypto.Signer, error) {
	switch alg {
	case AlgorithmEd25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case AlgorithmECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, fmt.Errorf("unknown CA algorithm %q", alg)
}

// encodeKey returns key in the OpenSSH private key format, which ssh-keygen
// reads, and its public key.
func encodeKey(key crypto.Signer, r Role) (priv []byte, pub ssh.PublicKey, err error) {
	block, err := ssh.MarshalPrivateKey(key, r.comment())
	if err != nil {
		return nil, nil, err
	}
	pub, err = ssh.NewPublicKey(key.Public())
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(block), pub, nil
}

func algorithmOf(k ssh.PublicKey) Algorithm {
	switch k.Type() {
	case ssh.KeyAlgoED25519:
		return AlgorithmEd25519
	case ssh.KeyAlgoECDSA256:
		return AlgorithmECDSAP256
	}
	return ""
}

func sameKey(a, b ssh.PublicKey) bool {
	return bytes.Equal(a.Marshal(), b.Marshal())
}

// JoinAuthorities gives home the certificate authorities of the bastion in
// from, for a second instance of the same bastion (a cluster member): a
// copy of every file in from's CADir (active and retired keys alike) and,
// if from has one, of its API TLS identity, so that clients trust both
// instances alike. from's authorities must load. home must have neither
// yet; nothing is copied then.
func JoinAuthorities(home, from string) (*Authorities, error) {
	if _, err := LoadAuthorities(from, time.Now()); err != nil {
		return nil, fmt.Errorf("join %s: %w", from, err)
	}
	for _, d := range []string{CADir, TLSDir} {
		if _, err := os.Lstat(filepath.Join(home, d)); err == nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(home, d), ErrKeyExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	copied := []string{}
	defer func() {
		for _, dir := range copied {
			os.RemoveAll(dir)
		}
	}()
	for _, d := range []string{CADir, TLSDir} {
		src := filepath.Join(from, d)
		ents, err := os.ReadDir(src)
		if errors.Is(err, fs.ErrNotExist) && d == TLSDir {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("join %s: %w", from, err)
		}
		tmp, err := os.MkdirTemp(home, ".join-*")
		if err != nil {
			return nil, err
		}
		for _, ent := range ents {
			if !ent.Type().IsRegular() {
				continue
			}
			info, err := ent.Info()
			if err != nil {
				os.RemoveAll(tmp)
				return nil, err
			}
			data, err := os.ReadFile(filepath.Join(src, ent.Name()))
			if err == nil {
				err = writeNew(filepath.Join(tmp, ent.Name()), string(data), info.Mode().Perm())
			}
			if err != nil {
				os.RemoveAll(tmp)
				return nil, fmt.Errorf("join %s: %w", from, err)
			}
		}
		if err := os.Chmod(tmp, 0o700); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		dst := filepath.Join(home, d)
		if err := os.Rename(tmp, dst); err != nil {
			os.RemoveAll(tmp)
			if errors.Is(err, fs.ErrExist) || errors.Is(err, unix.ENOTEMPTY) {
				return nil, fmt.Errorf("%s: %w", dst, ErrKeyExists)
			}
			return nil, err
		}
		copied = append(copied, dst)
	}
	if err := storage.SyncDir(home); err != nil {
		return nil, err
	}
	as, err := LoadAuthorities(home, time.Now())
	if err != nil {
		return nil, err
	}
	copied = nil
	return as, nil
}
