package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/oidc/oidctest"
)

// loginBastion is the API side of a bastion for login to talk to: an
// httptest TLS server on 127.0.0.1 with its self-signed certificate,
// issuing real certificates signed by an Ed25519 user CA.
type loginBastion struct {
	srv    *httptest.Server
	ca     ssh.Signer
	hostCA ssh.PublicKey

	mu sync.Mutex // guards the fields below
	// ttl is the lifetime of the certificates issued.
	ttl time.Duration
	// sshAddress is the SSHAddress of the answers.
	sshAddress string
	// issuers are the identity providers GET /v1/ca lists.
	issuers []certauth.IssuerInfo
	// identity checks a bearer token and returns who it names; nil
	// accepts any token as alice@example.com.
	identity func(token string) (string, error)
	// failNext answers that many certificate requests with a 503.
	failNext int
	// refuse, if set, answers every certificate request with it.
	refuse *certauth.ErrorResponse
	tokens []string                        // bearer tokens of all certificate requests
	issued []*certauth.CertificateResponse // certificates issued
}

func newLoginBastion(t *testing.T) *loginBastion {
	t.Helper()
	b := &loginBastion{ca: loginSigner(t), hostCA: loginSigner(t).PublicKey(), ttl: 5 * time.Minute, sshAddress: "bastion.example:2222"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ca", func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		defer b.mu.Unlock()
		loginWriteJSON(w, 200, certauth.CAResponse{KnownHosts: b.knownHosts(), Issuers: b.issuers, SSHAddress: b.sshAddress})
	})
	mux.HandleFunc("POST /v1/certificates", b.certificates)
	b.srv = httptest.NewTLSServer(mux)
	t.Cleanup(b.srv.Close)
	return b
}

func (b *loginBastion) knownHosts() []string {
	return []string{"@cert-authority * " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(b.hostCA))) + " bastion-host-ca"}
}

func (b *loginBastion) certificates(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	b.tokens = append(b.tokens, token)
	var req certauth.CertificateRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		loginWriteJSON(w, 400, certauth.ErrorResponse{Error: err.Error(), Reason: "request_malformed"})
		return
	}
	if b.failNext > 0 {
		b.failNext--
		loginWriteJSON(w, 503, certauth.ErrorResponse{Error: "the journal is unavailable", Reason: "journal_unavailable"})
		return
	}
	if b.refuse != nil {
		loginWriteJSON(w, 403, b.refuse)
		return
	}
	identity := "alice@example.com"
	if b.identity != nil {
		var err error
		if identity, err = b.identity(token); err != nil {
			loginWriteJSON(w, 401, certauth.ErrorResponse{Error: err.Error(), Reason: "token_invalid"})
			return
		}
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	if err != nil {
		loginWriteJSON(w, 400, certauth.ErrorResponse{Error: err.Error(), Reason: "key_malformed"})
		return
	}
	logins := req.Logins
	if len(logins) == 0 {
		logins = []string{"deploy", "ops"}
	}
	now := time.Now().Truncate(time.Second)
	serial := uint64(len(b.issued) + 1)
	keyID := fmt.Sprintf("%s/%d", identity, serial)
	if req.Ticket != "" {
		keyID += "/" + req.Ticket
	}
	cert := &ssh.Certificate{
		Key: pub, Serial: serial, CertType: ssh.UserCert, KeyId: keyID, ValidPrincipals: logins,
		ValidAfter: uint64(now.Unix()), ValidBefore: uint64(now.Add(b.ttl).Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if err := cert.SignCert(rand.Reader, b.ca); err != nil {
		loginWriteJSON(w, 500, certauth.ErrorResponse{Error: err.Error()})
		return
	}
	resp := &certauth.CertificateResponse{
		Certificate: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))),
		Serial:      serial, KeyID: keyID, Identity: identity, Principals: logins,
		ValidAfter: now, ValidBefore: now.Add(b.ttl), Extensions: []string{"permit-pty"},
		Rule: "ops", KnownHosts: b.knownHosts(), SSHAddress: b.sshAddress,
	}
	b.issued = append(b.issued, resp)
	loginWriteJSON(w, 200, resp)
}

// pin is the --ca-fingerprint of the server.
func (b *loginBastion) pin() string { return certauth.TLSFingerprint(b.srv.Certificate()) }

func (b *loginBastion) seen() (tokens []string, issued int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.tokens), len(b.issued)
}

func loginWriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func loginSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// lockedBuffer is an output that the command and the test may use at the
// same time; onWrite, if set, sees everything written so far.
type lockedBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	onWrite func(all string)
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.b.Write(p)
	if l.onWrite != nil {
		l.onWrite(l.b.String())
	}
	return n, err
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runLogin runs "bastion login ARGS..." with $HOME set to home and the
// other variables in vars, and returns the exit status and output.
func runLoginCmd(ctx context.Context, home string, vars map[string]string, stderr io.Writer, args ...string) (code int, stdout, errOut string) {
	var out bytes.Buffer
	var errBuf lockedBuffer
	if stderr == nil {
		stderr = &errBuf
	}
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: stderr, getenv: func(k string) string {
		if k == "HOME" {
			return home
		}
		return vars[k]
	}}
	code = run(ctx, append([]string{"login"}, args...), e)
	if lb, ok := stderr.(*lockedBuffer); ok {
		errOut = lb.String()
	}
	return code, out.String(), errOut
}

// sshKeygen returns the path of ssh-keygen; without it the test is
// skipped, or fails in CI.
func sshKeygen(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("ssh-keygen")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ssh-keygen is needed: %v", err)
		}
		t.Skipf("ssh-keygen not found: %v", err)
	}
	return p
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestLoginWritesKeyCertificateAndKnownHosts(t *testing.T) {
	t.Parallel()
	b := newLoginBastion(t)
	home := t.TempDir()
	key := filepath.Join(home, ".ssh", "bastion_ed25519")
	hosts := filepath.Join(home, ".ssh", "known_hosts")
	vars := map[string]string{"BASTION_TOKEN": "  secret-token-1\n"}
	args := []string{"--server", b.srv.URL, "--ca-fingerprint", b.pin(), "--token-env", "BASTION_TOKEN", "--ticket", "CHG-7"}

	code, stdout, stderr := runLoginCmd(context.Background(), home, vars, nil, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for path, want := range map[string]os.FileMode{filepath.Dir(key): 0o700, key: 0o600, key + ".pub": 0o644, key + "-cert.pub": 0o644} {
		if got := fileMode(t, path); got != want {
			t.Errorf("%s: mode %04o, want %04o", path, got, want)
		}
	}
	if tokens, _ := b.seen(); len(tokens) != 1 || tokens[0] != "secret-token-1" {
		t.Errorf("bearer tokens %q, want the trimmed token", tokens)
	}
	for _, want := range []string{
		"certificate for alice@example.com, granted by rule ops\n",
		"  principals:   deploy, ops\n",
		"  key id:       alice@example.com/1/CHG-7\n",
		"  key:          " + key + " (new)\n",
		"  certificate:  " + key + "-cert.pub\n",
		"  known hosts:  " + hosts + " (1 line added)\n",
		"\n  ssh -i " + key + " -p 2222 deploy@TARGET@bastion.example\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout+stderr, "secret-token") {
		t.Errorf("the token was printed")
	}

	// The real ssh-keygen reads the key and the certificate.
	keygen := sshKeygen(t)
	out, err := exec.Command(keygen, "-L", "-f", key+"-cert.pub").CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -L: %v\n%s", err, out)
	}
	for _, want := range []string{"user certificate", `Key ID: "alice@example.com/1/CHG-7"`, "Serial: 1", "deploy", "ops", "permit-pty"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ssh-keygen -L output lacks %q:\n%s", want, out)
		}
	}
	pubOut, err := exec.Command(keygen, "-y", "-f", key).Output()
	if err != nil {
		t.Fatalf("ssh-keygen -y: %v", err)
	}
	pubFile, _ := os.ReadFile(key + ".pub")
	if f := strings.Fields(string(pubOut)); len(f) < 2 || !strings.HasPrefix(string(pubFile), f[0]+" "+f[1]+" ") {
		t.Errorf("ssh-keygen -y gives %q, the .pub file has %q", pubOut, pubFile)
	}

	// A second login keeps the key, adds no known_hosts line twice and
	// keeps the file's other lines.
	keyBefore, _ := os.ReadFile(key)
	other := "[git.example]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	hostsBefore, _ := os.ReadFile(hosts)
	os.WriteFile(hosts, []byte(other+"\n"+strings.ReplaceAll(string(hostsBefore), " ", "  ")+other), 0o600)
	os.Chmod(hosts, 0o600)
	code, stdout, stderr = runLoginCmd(context.Background(), home, vars, nil, args...)
	if code != 0 {
		t.Fatalf("second login: exit %d: %s", code, stderr)
	}
	if keyAfter, _ := os.ReadFile(key); !bytes.Equal(keyAfter, keyBefore) {
		t.Errorf("the key was replaced")
	}
	if !strings.Contains(stdout, "  key:          "+key+"\n") || !strings.Contains(stdout, "(up to date)") {
		t.Errorf("second login's summary:\n%s", stdout)
	}
	hostsAfter, _ := os.ReadFile(hosts)
	if got := strings.Count(string(hostsAfter), "@cert-authority"); got != 1 {
		t.Errorf("known_hosts has %d @cert-authority lines, want 1:\n%s", got, hostsAfter)
	}
	if strings.Count(string(hostsAfter), other) != 2 || fileMode(t, hosts) != 0o600 {
		t.Errorf("known_hosts lost its other lines or its mode:\n%s", hostsAfter)
	}
	cert, err := os.ReadFile(key + "-cert.pub")
	if err != nil || !strings.Contains(string(cert), "ssh-ed25519-cert-v01@openssh.com") {
		t.Errorf("certificate file: %v %q", err, cert)
	}
	// The certificate on disk is the second one.
	pub, _, _, _, err := ssh.ParseAuthorizedKey(cert)
	if err != nil || pub.(*ssh.Certificate).Serial != 2 {
		t.Errorf("certificate on disk: %v, want serial 2", err)
	}
}

func TestLoginAddKnownHosts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca1 := "@cert-authority * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFiIhYEhJdvcZY5qNQ8cD7xSixEM2rnDbw8wWu/r6RNA host-ca"
	ca2 := "@cert-authority *.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	plain := "git.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

	// A new file in a new directory.
	path := filepath.Join(dir, "new", "known_hosts")
	if n, err := addKnownHosts(path, []string{ca1, ca1}); err != nil || n != 1 {
		t.Fatalf("new file: %d, %v", n, err)
	}
	if b, _ := os.ReadFile(path); string(b) != ca1+"\n" || fileMode(t, path) != 0o644 {
		t.Errorf("new file: %q, mode %04o", b, fileMode(t, path))
	}

	// A file without a final newline, reached through a symlink, which
	// stays a symlink.
	real := filepath.Join(dir, "real_known_hosts")
	os.WriteFile(real, []byte(plain), 0o600)
	link := filepath.Join(dir, "known_hosts")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if n, err := addKnownHosts(link, []string{ca1, ca2}); err != nil || n != 2 {
		t.Fatalf("symlink: %d, %v", n, err)
	}
	if b, _ := os.ReadFile(real); string(b) != plain+"\n"+ca1+"\n"+ca2+"\n" {
		t.Errorf("through the symlink: %q", b)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 || fileMode(t, real) != 0o600 {
		t.Errorf("the symlink was replaced, or the mode changed")
	}
	// Again, with the spacing changed: nothing to add, nothing written.
	before, _ := os.Stat(real)
	if n, err := addKnownHosts(link, []string{strings.ReplaceAll(ca2, " ", "   ")}); err != nil || n != 0 {
		t.Errorf("again: %d, %v", n, err)
	}
	if after, _ := os.Stat(real); !os.SameFile(before, after) || after.ModTime() != before.ModTime() {
		t.Errorf("the file was rewritten with nothing to add")
	}
}

func TestLoginJSON(t *testing.T) {
	t.Parallel()
	b := newLoginBastion(t)
	b.sshAddress = "[::]:22"
	home := t.TempDir()
	key := filepath.Join(t.TempDir(), "id")
	hosts := filepath.Join(home, "hosts")
	code, stdout, stderr := runLoginCmd(context.Background(), home, map[string]string{"TOK": "t"}, nil,
		"--server", b.srv.URL, "--ca-fingerprint", b.pin(), "--token-env", "TOK",
		"--key", key, "--known-hosts", hosts, "--login", "deploy", "--ttl", "5m", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
	}
	want := map[string]any{
		"certificate_file":  key + "-cert.pub",
		"key_file":          key,
		"key_created":       true,
		"serial":            1.0,
		"key_id":            "alice@example.com/1",
		"identity":          "alice@example.com",
		"principals":        []any{"deploy"},
		"rule":              "ops",
		"known_hosts_file":  hosts,
		"known_hosts_added": 1.0,
		"ssh_command":       "ssh -i " + key + " -o UserKnownHostsFile=" + hosts + " deploy@TARGET@127.0.0.1",
		"profile_file":      filepath.Join(home, ".config", "bastion", "profile.json"),
	}
	for k, v := range want {
		if !jsonEqual(got[k], v) {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	for _, k := range []string{"valid_after", "valid_before"} {
		s, _ := got[k].(string)
		if _, err := time.Parse(time.RFC3339, s); err != nil || !strings.HasSuffix(s, "Z") {
			t.Errorf("%s = %q, want an RFC 3339 UTC time", k, got[k])
		}
	}
	if len(got) != len(want)+2 {
		t.Errorf("JSON has %d fields, want %d: %v", len(got), len(want)+2, got)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func TestLoginRenewRereadsTokenFile(t *testing.T) {
	t.Parallel()
	b := newLoginBastion(t)
	b.ttl = 6 * time.Second // renewed at 4 s: time for a failure, its message and a retry before it expires
	home := t.TempDir()
	tokenFile := filepath.Join(home, "token")
	writeToken := func(tok string) {
		// The way kubelet rotates a projected token: a new file renamed
		// over the old.
		tmp := tokenFile + ".new"
		if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, tokenFile); err != nil {
			t.Fatal(err)
		}
	}
	writeToken("secret-token-1")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr lockedBuffer
	type result struct {
		code   int
		stdout string
	}
	done := make(chan result, 1)
	go func() {
		code, stdout, _ := runLoginCmd(ctx, home, nil, &stderr,
			"--server", b.srv.URL, "--ca-fingerprint", b.pin(), "--token-file", tokenFile, "--renew", "--json")
		done <- result{code, stdout}
	}()
	waitFor := func(what string, cond func(log string) bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if cond(stderr.String()) {
				return
			}
			select {
			case r := <-done:
				t.Fatalf("login ended early (exit %d) waiting for %s:\n%s", r.code, what, stderr.String())
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s:\n%s", what, stderr.String())
			}
		}
	}
	waitFor("the first certificate", func(log string) bool { return strings.Contains(log, "bastion: next renewal at") })
	// The token is rotated, and the next request fails once.
	b.mu.Lock()
	b.failNext = 1
	b.mu.Unlock()
	writeToken("secret-token-2")
	waitFor("a renewal", func(log string) bool { return strings.Contains(log, "bastion: renewed the certificate: serial 2,") })
	cancel()
	r := <-done
	if r.code != 0 {
		t.Errorf("exit %d after the signal, want 0:\n%s", r.code, stderr.String())
	}

	tokens, issued := b.seen()
	if tokens[0] != "secret-token-1" || len(tokens) < 3 || tokens[1] != "secret-token-2" {
		t.Errorf("bearer tokens %q: want the first, then the rotated one (failed, then retried)", tokens)
	}
	// One JSON line per certificate, the last one being the one on disk.
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != issued {
		t.Errorf("%d JSON lines for %d certificates:\n%s", len(lines), issued, r.stdout)
	}
	var last loginJSON
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatal(err)
	}
	cert, _ := os.ReadFile(last.CertificateFile)
	pub, _, _, _, err := ssh.ParseAuthorizedKey(cert)
	if err != nil || pub.(*ssh.Certificate).Serial != last.Serial {
		t.Errorf("certificate on disk: %v, want serial %d", err, last.Serial)
	}
	log := stderr.String()
	for _, want := range []string{
		"bastion: error: renewal failed: the bastion answered HTTP 503 (journal_unavailable): the journal is unavailable\n",
		"bastion: hint: the bastion could not serve the request; try again later\n",
		"expires in", "retrying in",
		"bastion: renewed the certificate: serial 2,",
		"bastion: stopped; the certificate " + last.CertificateFile + " stays valid until",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("stderr lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log+r.stdout, "secret-token") {
		t.Errorf("a token was printed")
	}
}

func TestLoginRenewAt(t *testing.T) {
	t.Parallel()
	got := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		life   time.Duration
		before time.Duration
		want   time.Duration // after got
	}{
		{"two thirds", 9 * time.Minute, 0, 6 * time.Minute},
		{"renew-before", 10 * time.Minute, 2 * time.Minute, 8 * time.Minute},
		{"renew-before longer than the lifetime", 10 * time.Minute, time.Hour, time.Minute},
		{"already expired", -time.Minute, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if at := loginRenewAt(got, got.Add(tt.life), tt.before); at.Sub(got) != tt.want {
				t.Errorf("renew %v after receipt, want %v", at.Sub(got), tt.want)
			}
		})
	}
	b := newLoginBackoff(time.Hour)
	var waits []time.Duration
	for range 12 {
		waits = append(waits, b.next())
	}
	for i, w := range waits {
		ceiling := min(time.Second<<i, 5*time.Minute)
		if w < ceiling/2 || w > ceiling {
			t.Errorf("wait %d = %v, want within [%v, %v]", i, w, ceiling/2, ceiling)
		}
	}
}

func TestLoginUsageErrors(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no server", []string{"--token-env", "T"}, "login needs --server URL"},
		{"both token sources", []string{"--server", "https://127.0.0.1:1", "--token-file", "f", "--token-env", "T"}, "not both"},
		{"issuer with a token", []string{"--server", "https://127.0.0.1:1", "--token-env", "T", "--issuer", "corp"}, "--issuer"},
		{"argument", []string{"--server", "https://127.0.0.1:1", "extra"}, "takes no arguments"},
		{"plain http", []string{"--server", "http://127.0.0.1:1", "--token-env", "T"}, "only spoken over https"},
		{"bad fingerprint", []string{"--server", "https://127.0.0.1:1", "--ca-fingerprint", "ab:cd", "--token-env", "T"}, "want SHA256:"},
		{"bad ttl", []string{"--server", "https://127.0.0.1:1", "--ttl", "soon"}, "invalid value"},
		{"negative ttl", []string{"--server", "https://127.0.0.1:1", "--ttl", "-5m"}, "positive"},
		{"renew-before alone", []string{"--server", "https://127.0.0.1:1", "--renew-before", "1m"}, "only applies with --renew"},
		{"empty login", []string{"--server", "https://127.0.0.1:1", "--login", ""}, "-login"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runLoginCmd(context.Background(), home, nil, nil, tt.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if stdout != "" || !strings.HasPrefix(stderr, "bastion: error: ") || !strings.Contains(stderr, tt.want) ||
				!strings.HasSuffix(stderr, "bastion: hint: run \"bastion help login\" for usage\n") {
				t.Errorf("stdout %q, stderr %q; want an error mentioning %q and the usage hint", stdout, stderr, tt.want)
			}
		})
	}
	if entries, _ := os.ReadDir(home); len(entries) != 0 {
		t.Errorf("usage errors left files in $HOME: %v", entries)
	}
}

func TestLoginFailures(t *testing.T) {
	t.Parallel()
	b := newLoginBastion(t)
	home := t.TempDir()
	openKey := filepath.Join(home, "open_key")
	if err := os.WriteFile(openKey, []byte("whatever"), 0o644); err != nil {
		t.Fatal(err)
	}
	otherPin := "SHA256:" + strings.Repeat("A", 43)
	twoTokens := filepath.Join(home, "two-tokens")
	os.WriteFile(twoTokens, []byte("secret-token-a\nsecret-token-b\n"), 0o600)
	base := []string{"--server", b.srv.URL, "--key", filepath.Join(home, "k"), "--known-hosts", filepath.Join(home, "kh")}
	tests := []struct {
		name   string
		args   []string
		refuse *certauth.ErrorResponse
		want   []string // in stderr
	}{
		{"self-signed, no pin", []string{"--token-env", "TOK"}, nil,
			[]string{"not trusted", b.pin(), "bastion: hint: if the bastion uses the self-signed certificate", "--ca-fingerprint"}},
		{"wrong pin", []string{"--token-env", "TOK", "--ca-fingerprint", otherPin}, nil,
			[]string{"expected " + otherPin, "presented " + b.pin(), "bastion: hint: if the bastion's TLS certificate was replaced"}},
		{"denied", []string{"--token-env", "TOK", "--ca-fingerprint", b.pin()}, &certauth.ErrorResponse{Error: "no rule grants alice a login", Reason: "denied"},
			[]string{"the bastion answered HTTP 403 (denied): no rule grants alice a login", `"bastion grants request"`}},
		{"empty token", []string{"--token-env", "EMPTY", "--ca-fingerprint", b.pin()}, nil, []string{"$EMPTY is not set or empty"}},
		{"missing token file", []string{"--token-file", filepath.Join(home, "nope"), "--ca-fingerprint", b.pin()}, nil, []string{"token file", "no such file"}},
		{"two tokens in a file", []string{"--token-file", twoTokens, "--ca-fingerprint", b.pin()}, nil, []string{"holds more than one token"}},
		{"key open to others", []string{"--token-env", "TOK", "--ca-fingerprint", b.pin(), "--key", openKey}, nil,
			[]string{"open to others (mode 0644)", "bastion: hint: chmod 600 " + openKey}},
		{"no device issuer", []string{"--ca-fingerprint", b.pin()}, nil,
			[]string{"offers no identity provider for device login", "--token-file FILE or --token-env VAR"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.mu.Lock()
			b.refuse = tt.refuse
			b.mu.Unlock()
			code, stdout, stderr := runLoginCmd(context.Background(), home, map[string]string{"TOK": "secret-token-x"}, nil, slices.Concat(base, tt.args)...)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			for _, want := range tt.want {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if stdout != "" || strings.Contains(stderr, "secret-token") {
				t.Errorf("stdout %q, stderr %q: want no output and no token", stdout, stderr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(home, "k-cert.pub")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a certificate was written: %v", err)
	}
}

func TestLoginChooseIssuer(t *testing.T) {
	t.Parallel()
	corp := certauth.IssuerInfo{Name: "corp", Issuer: "https://idp.corp.example", DeviceClientID: "cli"}
	ci := certauth.IssuerInfo{Name: "ci", Issuer: "https://token.ci.example"}
	partner := certauth.IssuerInfo{Name: "partner", Issuer: "https://idp.partner.example", DeviceClientID: "bastion"}
	tests := []struct {
		name    string
		issuers []certauth.IssuerInfo
		flag    string
		want    string // issuer name, or a substring of the error and its hints
	}{
		{"the only device issuer", []certauth.IssuerInfo{ci, corp}, "", "corp"},
		{"named", []certauth.IssuerInfo{corp, partner}, "partner", "partner"},
		{"several", []certauth.IssuerInfo{corp, partner}, "", "choose one with --issuer NAME: corp, partner"},
		{"named without device flow", []certauth.IssuerInfo{corp, ci}, "ci", `"ci" offers no device login`},
		{"unknown", []certauth.IssuerInfo{corp, partner}, "nope", "offered with: corp, partner"},
		{"none", []certauth.IssuerInfo{ci}, "", "no identity provider for device login"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loginChooseIssuer(tt.issuers, tt.flag)
			if err != nil {
				msg := err.Error() + " " + strings.Join(hints(err), " ")
				if !strings.Contains(msg, tt.want) {
					t.Errorf("error %q, want it to mention %q", msg, tt.want)
				}
				return
			}
			if got.Name != tt.want {
				t.Errorf("chose %q, want %q", got.Name, tt.want)
			}
		})
	}
}

func TestLoginDeviceFlow(t *testing.T) {
	t.Parallel()
	b := newLoginBastion(t)
	issuer, approve := oidctest.StartDeviceOP(t)
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatal(err)
	}
	verifier := provider.Verifier(&oidc.Config{ClientID: "bastion-cli"})
	b.issuers = []certauth.IssuerInfo{
		{Name: "ci", Issuer: "https://token.ci.example", Audience: []string{"bastion"}},
		{Name: "corp", Issuer: issuer, Audience: []string{"bastion-cli"}, DeviceClientID: "bastion-cli", DeviceScopes: []string{"profile"}},
	}
	// The bastion accepts only an ID token of the provider, for the device
	// client, as the server does.
	b.identity = func(token string) (string, error) {
		idt, err := verifier.Verify(ctx, token)
		if err != nil {
			return "", err
		}
		return idt.Subject + "@corp", nil
	}

	// The human reads the code on stderr and approves it in a browser.
	codeRE := regexp.MustCompile(`enter the code (\S+)\n`)
	approved := make(chan error, 1)
	var once sync.Once
	stderr := &lockedBuffer{onWrite: func(all string) {
		if m := codeRE.FindStringSubmatch(all); m != nil {
			once.Do(func() { go func() { approved <- approve(m[1]) }() })
		}
	}}
	home := t.TempDir()
	code, stdout, _ := runLoginCmd(ctx, home, nil, stderr, "--server", b.srv.URL, "--ca-fingerprint", b.pin())
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	if err := <-approved; err != nil {
		t.Fatalf("approval: %v", err)
	}
	log := stderr.String()
	for _, want := range []string{
		"bastion: to log in with corp, open " + issuer + "/device and enter the code ",
		"bastion: or open " + issuer + "/device?user_code=",
		"bastion: waiting for your approval (the code expires in ",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("stderr lacks %q:\n%s", want, log)
		}
	}
	if !strings.Contains(stdout, "certificate for alice@corp") {
		t.Errorf("stdout:\n%s", stdout)
	}
	if tokens, _ := b.seen(); len(tokens) != 1 || strings.Contains(stdout+log, tokens[0]) {
		t.Errorf("the token was printed, or not sent once")
	}
}
