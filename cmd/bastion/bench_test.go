package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/apiclient"
	"github.com/bastionhq/bastion/certauth/oidc/oidctest"
)

// issuanceRig is "bastion serve" in its own process, as deployed, trusting
// a real OpenID provider on loopback, with clients in the benchmark's
// process.
type issuanceRig struct {
	token   string
	pub     string
	clients []*apiclient.Client
	server  *exec.Cmd
}

// cpu returns the CPU time the server and this process have used so far.
func (r *issuanceRig) cpu() (server, self time.Duration) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.server.Process.Pid))
	if err != nil {
		return 0, self
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	var ut, st int64
	fmt.Sscan(f[11], &ut) // utime, in clock ticks (100 per second)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * 10 * time.Millisecond, self
}

func newIssuanceRig(b *testing.B, clients int) *issuanceRig {
	b.Helper()
	m := oidctest.StartMock(b, nil)

	dir := b.TempDir()
	home := filepath.Join(dir, "home")
	if code, _, stderr := runArgs("--home", home, "ca", "init"); code != 0 {
		b.Fatalf("ca init: %s", stderr)
	}
	cfg := filepath.Join(dir, "bastion.hcl")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
home = %q
api {
  listen            = "127.0.0.1:0"
  rate_per_identity = -1
  rate_per_address  = -1
}
identity_provider "corp" {
  issuer    = %q
  audiences = [%q]
}
role "agents" {
  match {
    providers = ["corp"]
    subjects  = ["agent-*"]
  }
  logins = ["deploy"]
}
`, home, m.Issuer(), m.ClientID)), 0o600); err != nil {
		b.Fatal(err)
	}
	sp := startServeProcess(b, cfg, false)
	api, fp, cmd := sp.api, sp.fingerprint, sp.cmd

	now := time.Now()
	r := &issuanceRig{server: cmd}
	var err error
	r.token, err = m.Keypair.SignJWT(jwt.MapClaims{
		"iss": m.Issuer(), "sub": "agent-1", "aud": m.ClientID,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	if err != nil {
		b.Fatal(err)
	}
	pk, _, _ := ed25519.GenerateKey(nil)
	spk, _ := ssh.NewPublicKey(pk)
	r.pub = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(spk)))
	for range clients {
		c, err := apiclient.NewClient(api, apiclient.ClientOptions{Fingerprint: fp})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Certificate(context.Background(), r.token, certauth.CertificateRequest{PublicKey: r.pub}); err != nil {
			b.Fatal(err) // and warm the connection
		}
		r.clients = append(r.clients, c)
	}
	return r
}

func (r *issuanceRig) issue(b *testing.B, i int) {
	if _, err := r.clients[i].Certificate(context.Background(), r.token, certauth.CertificateRequest{PublicKey: r.pub}); err != nil {
		b.Error(err)
	}
}

func (r *issuanceRig) report(b *testing.B, lat [][]time.Duration, elapsed, server0, self0 time.Duration) {
	server, self := r.cpu()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "certs/s")
	b.ReportMetric(ms(all[len(all)/2]), "p50-ms")
	b.ReportMetric(ms(all[len(all)*99/100]), "p99-ms")
	b.ReportMetric(float64((server-server0).Microseconds())/float64(len(all)), "server-cpu-µs/op")
	b.ReportMetric(float64((self-self0).Microseconds())/float64(len(all)), "client-cpu-µs/op")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkIssuanceThroughput is the token exchange at full speed: 50
// concurrent HTTPS clients, each sending its next request as soon as the
// last is answered. Each request is a full verification of an RS256 token
// from a real OpenID provider, a policy decision, a journal commit (group
// commit, synchronous=FULL) and an ed25519 signature, by "bastion serve"
// in its own process.
func BenchmarkIssuanceThroughput(b *testing.B) {
	const clients = 50
	r := newIssuanceRig(b, clients)
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	b.ResetTimer()
	server0, self0 := r.cpu()
	start := time.Now()
	for i := range clients {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				r.issue(b, i)
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	r.report(b, lat, time.Since(start), server0, self0)
}

// BenchmarkIssuanceLatency offers 2,000 requests per second from 50
// concurrent clients (40/s each, evenly spaced) and reports the latency
// percentiles. Latency runs from when a request was due, not when it was
// sent, so a server falling behind cannot hide its backlog.
func BenchmarkIssuanceLatency(b *testing.B) {
	const clients, rate = 50, 2000
	r := newIssuanceRig(b, clients)
	per := (b.N + clients - 1) / clients
	interval := time.Second * clients / rate
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	b.ResetTimer()
	server0, self0 := r.cpu()
	start := time.Now()
	for i := range clients {
		wg.Go(func() {
			due := start.Add(interval * time.Duration(i) / clients)
			for range per {
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				r.issue(b, i)
				lat[i] = append(lat[i], time.Since(due))
				due = due.Add(interval)
			}
		})
	}
	wg.Wait()
	r.report(b, lat, time.Since(start), server0, self0)
}

// serveProcess is "bastion serve --config" running in its own process
// (the test binary re-executed as bastion), as deployed, or, from
// startServeInProcess, in the test's own process.
type serveProcess struct {
	api, fingerprint, ssh string
	cmd                   *exec.Cmd // nil when serve runs in this process
	pid                   int       // the process serve runs in
}

// startServeProcess starts serve with cfg and reads its addresses from
// what it prints; withSSH waits for the SSH front door's too. It is
// stopped with SIGTERM when the benchmark ends. Its log goes to stderr,
// errors only (go test folds a benchmark's stderr into the output make
// bench parses, where a warning would split a result line), or, given
// log, all of it to log.
func startServeProcess(b testing.TB, cfg string, withSSH bool, log ...io.Writer) *serveProcess {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := &exec.Cmd{Path: exe, Args: []string{"bastion", "serve", "--config", cfg, "--log-level", "error"}, Stderr: os.Stderr}
	if len(log) > 0 {
		cmd.Args[len(cmd.Args)-1], cmd.Stderr = "info", log[0]
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	sp := &serveProcess{cmd: cmd, pid: cmd.Process.Pid}
	sp.readAddresses(b, out, withSSH)
	return sp
}

// startServeInProcess runs serve with cfg in this process, as run does for
// the command line, so that the test binary's own -test.cpuprofile,
// -test.blockprofile and -test.mutexprofile see it. It is stopped, as
// SIGTERM stops a serve process, when the benchmark ends.
func startServeInProcess(b testing.TB, cfg string, withSSH bool) *serveProcess {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	e := &env{stdin: strings.NewReader(""), stdout: pw, stderr: os.Stderr, getenv: func(string) string { return "" }}
	exited := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"serve", "--config", cfg, "--log-level", "error"}, e)
		pw.Close()
		exited <- code
	}()
	b.Cleanup(func() {
		cancel()
		if code := <-exited; code != 0 {
			b.Errorf("serve exited %d", code)
		}
	})
	sp := &serveProcess{pid: os.Getpid()}
	sp.readAddresses(b, pr, withSSH)
	return sp
}

// readAddresses reads serve's addresses from what it prints, then drains
// the rest.
func (sp *serveProcess) readAddresses(b testing.TB, out io.Reader, withSSH bool) {
	b.Helper()
	sc := bufio.NewScanner(out)
	for (sp.api == "" || sp.fingerprint == "" || withSSH && sp.ssh == "") && sc.Scan() {
		if m := regexp.MustCompile(`HTTPS API at (https://\S+)`).FindStringSubmatch(sc.Text()); m != nil {
			sp.api = m[1]
		}
		if m := regexp.MustCompile(`fingerprint (SHA256:\S+)`).FindStringSubmatch(sc.Text()); m != nil {
			sp.fingerprint = m[1]
		}
		if m := regexp.MustCompile(`SSH front door at (\S+)`).FindStringSubmatch(sc.Text()); m != nil {
			sp.ssh = m[1]
		}
	}
	if sp.api == "" || sp.fingerprint == "" || withSSH && sp.ssh == "" {
		b.Fatal("serve did not start")
	}
	go io.Copy(io.Discard, out)
}
