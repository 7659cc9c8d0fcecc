package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/bastionhq/bastion/bastion/sshdtest"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/apiclient"
	"github.com/bastionhq/bastion/certauth/oidc/oidctest"
)

// frontRig is "bastion serve" in its own process with an upstream sshd
// target, beside an OpenSSH jump host in front of the same sshd, and a
// client key whose certificate all three accept.
type frontRig struct {
	ssh, login, key, known string
	home, bastionAddr      string
	bastionPort            string
	jumpPort, targetPort   string
	pid                    int   // of the process serve runs in
	sshds                  []int // the target's and the jump host's sshd
}

func newFrontRig(b *testing.B) *frontRig {
	b.Helper()
	r := &frontRig{ssh: sshdtest.Need(b, "ssh"), login: "root"}
	if u, err := user.Current(); err == nil {
		r.login = u.Username
	}
	m := oidctest.StartMock(b, nil)
	dir := b.TempDir()
	// The target trusts the target CA (the bastion) and the user CA (the
	// client going direct or through the OpenSSH jump host).
	home, trust := rigHome(b, dir, true)
	target := sshdtest.Start(b, "TrustedUserCAKeys "+trust)
	jump := sshdtest.Start(b, "TrustedUserCAKeys "+trust, "AllowTcpForwarding yes")
	r.targetPort, r.jumpPort = target.Port, jump.Port
	for _, s := range []*sshdtest.SSHD{target, jump} {
		pid, err := os.ReadFile(filepath.Join(s.Dir, "sshd.pid"))
		if err != nil {
			b.Fatal(err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(pid)))
		if err != nil {
			b.Fatalf("sshd.pid: %v", err)
		}
		r.sshds = append(r.sshds, n)
	}
	targetPub, err := os.ReadFile(target.HostKey + ".pub")
	if err != nil {
		b.Fatal(err)
	}
	jumpPub, err := os.ReadFile(jump.HostKey + ".pub")
	if err != nil {
		b.Fatal(err)
	}

	cfg := filepath.Join(dir, "bastion.hcl")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
home = %q
api {
  listen            = "127.0.0.1:0"
  rate_per_identity = -1
  rate_per_address  = -1
}
ssh {
  listen = "127.0.0.1:0"
  # every benchmark client comes from 127.0.0.1
  max_connections_per_address = 2000
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
  targets = ["box", "db"]
  logins  = [%[4]q]
  pty     = true
  shell   = true
  # port forwarding for the OpenSSH jump host the bastion is measured against
  permit = ["permit-pty", "permit-port-forwarding"]
}
# The same sshd, its output masked with every built-in detector.
role "agents-masked" {
  match {
    providers = ["corp"]
    subjects  = ["agent-*"]
  }
  targets = ["dbm"]
  logins  = [%[4]q]
  pty     = true
  shell   = true
  masking = "all"
  permit  = ["permit-pty", "permit-port-forwarding"]
}
target "db" {
  ssh      = %[5]q
  host_key = %[6]q
}
target "dbm" {
  ssh      = %[5]q
  host_key = %[6]q
}
target "box" { command = ["/bin/sh"] }
`, home, m.Issuer(), m.ClientID, r.login, target.Addr, strings.TrimSpace(string(targetPub)))), 0o600); err != nil {
		b.Fatal(err)
	}
	// BENCH_FRONT_INPROCESS=1 runs serve in the benchmark's own process,
	// for the test binary's CPU, block and mutex profiles.
	var sp *serveProcess
	if os.Getenv("BENCH_FRONT_INPROCESS") == "1" {
		sp = startServeInProcess(b, cfg, true)
	} else {
		sp = startServeProcess(b, cfg, true)
	}
	r.bastionPort = sp.ssh[strings.LastIndexByte(sp.ssh, ':')+1:]
	r.home, r.bastionAddr, r.pid = home, sp.ssh, sp.pid

	// The client's key and certificate, through the real exchange.
	r.key, r.known = agentKey(b, m, sp, dir, "agent-1",
		"[127.0.0.1]:"+target.Port+" "+strings.TrimSpace(string(targetPub)),
		"[127.0.0.1]:"+jump.Port+" "+strings.TrimSpace(string(jumpPub)))
	return r
}

// rigHome makes a bastion home in dir with its CAs ("bastion ca init"),
// and the file of CA keys an sshd target trusts: the target CA (the
// bastion's upstream certificates) and, with userCA, the user CA (clients
// that go to the target directly).
func rigHome(tb testing.TB, dir string, userCA bool) (home, trust string) {
	tb.Helper()
	home = filepath.Join(dir, "home")
	if code, _, stderr := runArgs("--home", home, "ca", "init"); code != 0 {
		tb.Fatalf("ca init: %s", stderr)
	}
	auth, err := certauth.LoadAuthorities(home, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	lines := auth.Target.AuthorizedKeys()
	if userCA {
		lines = slices.Concat(lines, auth.User.AuthorizedKeys())
	}
	trust = filepath.Join(dir, "trusted_ca")
	if err := os.WriteFile(trust, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	return home, trust
}

// mockToken is an ID token of the mock provider for sub, valid for an
// hour.
func mockToken(tb testing.TB, m *mockoidc.MockOIDC, sub string) string {
	tb.Helper()
	now := time.Now()
	token, err := m.Keypair.SignJWT(jwt.MapClaims{"iss": m.Issuer(), "sub": sub, "aud": m.ClientID, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	if err != nil {
		tb.Fatal(err)
	}
	return token
}

// agentKey makes an Ed25519 key in dir and its certificate for sub,
// through the real exchange with the serve at sp, and a known_hosts file
// of the bastion's host CA and the extra lines. It returns both paths.
func agentKey(tb testing.TB, m *mockoidc.MockOIDC, sp *serveProcess, dir, sub string, extra ...string) (key, known string) {
	tb.Helper()
	_, priv, _ := ed25519.GenerateKey(nil)
	block, _ := ssh.MarshalPrivateKey(priv, "")
	key = filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		tb.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(priv.Public())
	c, err := apiclient.NewClient(sp.api, apiclient.ClientOptions{Fingerprint: sp.fingerprint})
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := c.Certificate(context.Background(), mockToken(tb, m, sub), certauth.CertificateRequest{PublicKey: string(ssh.MarshalAuthorizedKey(pub)), TTL: "1h"})
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(key+"-cert.pub", []byte(resp.Certificate+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	known = filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, []byte(strings.Join(append(resp.KnownHosts, extra...), "\n")+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	return key, known
}

// run runs ssh with the rig's options and returns how long it took. Its
// output goes to /dev/null itself, not through a pipe this process would
// copy from.
func (r *frontRig) run(b *testing.B, args ...string) time.Duration {
	b.Helper()
	wall, _ := r.runCPU(b, args...)
	return wall
}

// runCPU is run, and also returns the CPU time (user and system) of the
// ssh client and the ssh processes it started and waited for (the
// ProxyCommand's).
func (r *frontRig) runCPU(b *testing.B, args ...string) (wall, cpu time.Duration) {
	b.Helper()
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	cmd := exec.Command(r.ssh, append(r.base(), args...)...)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = devNull, &stderr
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("ssh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	wall = time.Since(t0)
	return wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// serversCPU is the CPU time (user and system) that the rig's servers
// have used so far: bastion serve's process, and the target's and the
// jump host's sshd with every connection process they have reaped (it
// waits, up to 10 s, until each has reaped all of them). A connection
// process's own children (the command) are in its figure.
func (r *frontRig) serversCPU(b *testing.B) time.Duration {
	b.Helper()
	total := procTicks(b, r.pid, 13, 14) // utime, stime
	for _, pid := range r.sshds {
		deadline := time.Now().Add(10 * time.Second)
		for {
			kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
			if err != nil {
				b.Fatal(err)
			}
			if len(strings.TrimSpace(string(kids))) == 0 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("sshd %d still has connection processes %s", pid, kids)
			}
			time.Sleep(5 * time.Millisecond)
		}
		total += procTicks(b, pid, 15, 16) // cutime, cstime
	}
	return time.Duration(total) * 10 * time.Millisecond
}

// procTicks sums fields of /proc/PID/stat (numbered from 0 after the
// command name's closing parenthesis: 13 is utime), in USER_HZ ticks.
func procTicks(b *testing.B, pid int, fields ...int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	var n int64
	for _, i := range fields {
		v, err := strconv.ParseInt(f[i-2], 10, 64)
		if err != nil {
			b.Fatalf("/proc/%d/stat: %v", pid, err)
		}
		n += v
	}
	return n
}

// base are the client options of every hop.
func (r *frontRig) base() []string {
	return []string{"-F", "none", "-i", r.key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + r.known, "-o", "LogLevel=ERROR"}
}

// box is the bastion's local command target.
func (r *frontRig) box() []string {
	return []string{"-p", r.bastionPort, r.login + "@box@127.0.0.1"}
}

// bastion and jump are the two ways to the same sshd.
func (r *frontRig) bastion(extra ...string) []string {
	return append(append([]string{"-p", r.bastionPort}, extra...), r.login+"@db@127.0.0.1")
}

// bastionJump is ssh -J through the bastion to the same sshd: the inner
// connection goes to the target name, which the bastion terminates with a
// host certificate for that name. Spelled as a ProxyCommand, as jump is.
func (r *frontRig) bastionJump(extra ...string) []string {
	proxy := r.ssh + " " + strings.Join(r.base(), " ") + " -p " + r.bastionPort + " -W %h:%p " + r.login + "@127.0.0.1"
	return append(append([]string{"-o", "ProxyCommand=" + proxy}, extra...), r.login+"@db")
}

// masked is bastion to the same sshd with every masking detector on.
func (r *frontRig) masked(extra ...string) []string {
	return append(append([]string{"-p", r.bastionPort}, extra...), r.login+"@dbm@127.0.0.1")
}

// jump goes through the OpenSSH jump host, as -J does (ssh -W through it;
// spelled as a ProxyCommand so that the jump hop gets the same options,
// which -J does not pass on).
func (r *frontRig) jump(extra ...string) []string {
	proxy := r.ssh + " " + strings.Join(r.base(), " ") + " -p " + r.jumpPort + " -W %h:%p " + r.login + "@127.0.0.1"
	return append(append([]string{"-o", "ProxyCommand=" + proxy, "-p", r.targetPort}, extra...), r.login+"@127.0.0.1")
}

func (r *frontRig) direct(extra ...string) []string {
	return append(append([]string{"-p", r.targetPort}, extra...), r.login+"@127.0.0.1")
}

func benchMiB() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_FRONT_MIB")); err == nil && n > 0 {
		return n
	}
	return 256
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// machineBusy is the CPU time the whole machine has spent so far: the
// "cpu" line of /proc/stat, every state but idle, iowait and steal (time
// another virtual machine had), in USER_HZ ticks of 10 ms.
func machineBusy(b *testing.B) time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		b.Fatalf("/proc/stat: unexpected first line %q", line)
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			b.Fatalf("/proc/stat: %v", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// bulkRoute is one way to run a command on the sshd target, and what each
// run of it took: wall time, the whole machine's busy CPU time, and the CPU
// time of the processes on the route (the ssh client, bastion serve, the
// sshd servers and the command).
type bulkRoute struct {
	name              string
	args              []string
	wall, busy, procs []time.Duration
}

// run runs the route once and keeps its figures.
//
// Each route starts with nothing left to write back: sync(2) first, so
// that a route is not billed (in time or in the machine's CPU) for the
// writeback of the journal pages a route before it wrote.
func (rt *bulkRoute) run(b *testing.B, r *frontRig) {
	unix.Sync()
	servers0 := r.serversCPU(b)
	busy0 := machineBusy(b)
	wall, client := r.runCPU(b, rt.args...)
	busy := machineBusy(b) - busy0
	rt.wall = append(rt.wall, wall)
	rt.busy = append(rt.busy, busy)
	rt.procs = append(rt.procs, client+r.serversCPU(b)-servers0)
}

// BenchmarkFrontBulk is bulk output from a real sshd target, read by the
// real ssh client, on each route to that same sshd in the same iteration:
//
//	bastion     LOGIN@db@bastion (recorded, record-then-forward)
//	bastion-J   ssh -J through the bastion (recorded)
//	jump        ssh -J through an OpenSSH jump host (unrecorded)
//	direct      straight to the target
//	bastion-tt  the bastion route with a terminal (-tt)
//	jump-tt     the OpenSSH jump host with a terminal
//
// The first four run in one order in even iterations and the reverse in odd
// ones, then the two -tt routes, alternating the same way. Each route
// reports its MB/s, the CPU time the whole machine spent per MB meanwhile
// (core-ms/MB, from /proc/stat: everything running, so other load on the
// machine counts too), and the CPU time of the route's own processes per
// MB (procs-core-ms/MB: the ssh clients, serve, both sshd and what they
// ran, from their rusage; kernel threads working for them are not in it,
// nor is anyone else's load); the ratios bastion/jump, bastion-J/jump and
// bastion-tt/jump-tt are throughput ratios, medians of the iterations'.
// BENCH_FRONT_MIB sets the size (default 256 MiB); BENCH_FRONT_INPROCESS=1
// runs serve in the benchmark's process, for -cpuprofile, -blockprofile and
// -mutexprofile; BENCH_FRONT_ROUTES (names, comma-separated) runs only
// those routes, to profile one at a time, and then reports no ratio.
func BenchmarkFrontBulk(b *testing.B) {
	r := newFrontRig(b)
	mib := benchMiB()
	command := fmt.Sprintf("head -c %dM /dev/zero", mib)
	route := func(name string, args []string) *bulkRoute {
		return &bulkRoute{name: name, args: append(args, command)}
	}
	viaBastion := route("bastion", r.bastion())
	viaBastionJ := route("bastion-J", r.bastionJump())
	viaJump := route("jump", r.jump())
	direct := route("direct", r.direct())
	ttBastion := route("bastion-tt", r.bastion("-tt"))
	ttJump := route("jump-tt", r.jump("-tt"))
	bulk := []*bulkRoute{viaBastion, viaBastionJ, viaJump, direct}
	tt := []*bulkRoute{ttBastion, ttJump}
	only := os.Getenv("BENCH_FRONT_ROUTES")
	if only != "" {
		names := strings.Split(only, ",")
		skip := func(rt *bulkRoute) bool { return !slices.Contains(names, rt.name) }
		bulk, tt = slices.DeleteFunc(bulk, skip), slices.DeleteFunc(tt, skip)
		if len(bulk)+len(tt) == 0 {
			b.Fatalf("BENCH_FRONT_ROUTES=%s names no route", only)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		for _, group := range [][]*bulkRoute{bulk, tt} {
			order := slices.Clone(group)
			if i%2 == 1 {
				slices.Reverse(order)
			}
			for _, rt := range order {
				rt.run(b, r)
			}
		}
	}
	b.StopTimer()
	size := float64(mib) * (1 << 20) / 1e6 // MB
	perMB := func(ds []time.Duration) float64 {
		per := make([]time.Duration, len(ds))
		for k, d := range ds {
			per[k] = time.Duration(float64(d) / size)
		}
		return float64(median(per)) / 1e6
	}
	for _, rt := range append(bulk, tt...) {
		b.ReportMetric(size/median(rt.wall).Seconds(), rt.name+"-MB/s")
		b.ReportMetric(perMB(rt.busy), rt.name+"-core-ms/MB")
		b.ReportMetric(perMB(rt.procs), rt.name+"-procs-core-ms/MB")
	}
	if only != "" {
		b.ReportMetric(0, "ns/op")
		return
	}
	ratio := func(num, den *bulkRoute) float64 {
		rs := make([]float64, len(num.wall))
		for k := range rs {
			rs[k] = den.wall[k].Seconds() / num.wall[k].Seconds()
		}
		slices.Sort(rs)
		return rs[len(rs)/2]
	}
	b.ReportMetric(ratio(viaBastion, viaJump), "bastion/jump")
	b.ReportMetric(ratio(viaBastionJ, viaJump), "bastion-J/jump")
	b.ReportMetric(ratio(ttBastion, ttJump), "bastion-tt/jump-tt")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkFrontTrue is the latency of "ssh … true": connect, authenticate,
// run nothing, through the bastion (LOGIN@db@bastion and ssh -J through
// it) against through an OpenSSH -J jump host, and straight to the target
// for reference, in one order in even iterations and the reverse in odd
// ones. The ratios are of times: medians of the iterations' ratios.
func BenchmarkFrontTrue(b *testing.B) {
	r := newFrontRig(b)
	routes := []*bulkRoute{
		{name: "bastion", args: append(r.bastion(), "true")},
		{name: "bastion-J", args: append(r.bastionJump(), "true")},
		{name: "jump", args: append(r.jump(), "true")},
		{name: "direct", args: append(r.direct(), "true")},
	}
	b.ResetTimer()
	for i := range b.N {
		order := slices.Clone(routes)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, rt := range order {
			rt.wall = append(rt.wall, r.run(b, rt.args...))
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	for _, rt := range routes {
		b.ReportMetric(ms(median(rt.wall)), rt.name+"-ms")
	}
	ratio := func(num, den *bulkRoute) float64 {
		rs := make([]float64, len(num.wall))
		for k := range rs {
			rs[k] = num.wall[k].Seconds() / den.wall[k].Seconds()
		}
		slices.Sort(rs)
		return rs[len(rs)/2]
	}
	b.ReportMetric(ratio(routes[0], routes[2]), "bastion/jump")
	b.ReportMetric(ratio(routes[1], routes[2]), "bastion-J/jump")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkFrontLoad runs 100 concurrent exec sessions through the
// bastion, each sending 10 MB through "cat" on a local command target and
// reading it back: every byte must arrive (SHA-256 both ways) and, at the
// end, the journal that recorded all of it must verify. It reports the
// aggregate rate.
func BenchmarkFrontLoad(b *testing.B) {
	const sessions, size = 100, 10 << 20
	r := newFrontRig(b)
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	in := filepath.Join(b.TempDir(), "in")
	if err := os.WriteFile(in, data, 0o600); err != nil {
		b.Fatal(err)
	}
	want := sha256.Sum256(data)
	var elapsed time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, sessions)
		for range sessions {
			wg.Go(func() {
				f, err := os.Open(in)
				if err != nil {
					errs <- err
					return
				}
				defer f.Close()
				h := sha256.New()
				cmd := exec.Command(r.ssh, append(append(r.base(), r.box()...), "cat")...)
				var stderr strings.Builder
				cmd.Stdin, cmd.Stdout, cmd.Stderr = f, h, &stderr
				if err := cmd.Run(); err != nil {
					errs <- fmt.Errorf("ssh: %v: %s", err, stderr.String())
					return
				}
				if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
					errs <- errors.New("the data came back different")
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		elapsed += time.Since(t0)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*sessions*size*2)/elapsed.Seconds()/1e6, "MB/s-both-ways")
	b.ReportMetric(0, "ns/op")
	if code, out, errOut := runArgs("--home", r.home, "verify", "--json"); code != 0 {
		b.Fatalf("verify after the load: exit %d\n%s\n%s", code, out, errOut)
	}
}
