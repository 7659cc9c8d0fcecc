package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/apiclient"
)

// startDevServe is startServeProcess for "bastion serve --dev --config
// cfg": the development OpenID provider runs beside the configuration's
// roles, trusted as provider "dev". It returns the process and the dev
// provider's issuer URL; the log, at info, goes to log.
func startDevServe(t *testing.T, cfg string, log io.Writer) (*serveProcess, string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := &exec.Cmd{Path: exe, Args: []string{"bastion", "serve", "--dev", "--config", cfg, "--log-level", "info"}, Stderr: log}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	sp := &serveProcess{cmd: cmd}
	var dev string
	patterns := []struct {
		re  *regexp.Regexp
		set *string
	}{
		{regexp.MustCompile(`HTTPS API at (https://\S+)`), &sp.api},
		{regexp.MustCompile(`fingerprint (SHA256:\S+)`), &sp.fingerprint},
		{regexp.MustCompile(`SSH front door at (\S+)`), &sp.ssh},
		{regexp.MustCompile(`DEVELOPMENT ISSUER \(never in production\): (\S+)`), &dev},
	}
	sc := bufio.NewScanner(out)
	for (sp.api == "" || sp.fingerprint == "" || sp.ssh == "" || dev == "") && sc.Scan() {
		for _, p := range patterns {
			if m := p.re.FindStringSubmatch(sc.Text()); m != nil {
				*p.set = m[1]
			}
		}
	}
	if sp.api == "" || sp.fingerprint == "" || sp.ssh == "" || dev == "" {
		t.Fatalf("serve --dev did not start: API %q, fingerprint %q, SSH %q, dev issuer %q", sp.api, sp.fingerprint, sp.ssh, dev)
	}
	go io.Copy(io.Discard, out)
	return sp, dev
}

// devTokenFile mints a token of the development provider ("bastion dev
// token --sub sub ARGS...") and writes it to a file in dir, named after
// sub, for --token-file.
func devTokenFile(t *testing.T, home, dir, sub string, args ...string) string {
	t.Helper()
	code, out, errOut := cli(context.Background(), home, append([]string{"dev", "token", "--sub", sub, "--ttl", "1h"}, args...)...)
	if code != 0 {
		t.Fatalf("dev token --sub %s: exit %d: %s", sub, code, errOut)
	}
	f := filepath.Join(dir, sub+".token")
	if err := os.WriteFile(f, []byte(strings.TrimSpace(out)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// devCert makes an Ed25519 key in dir, named name, and its certificate
// through the real exchange with the serve at sp, for the token in
// tokenFile. It returns the key's path and the certificate's serial, and
// writes the bastion's known_hosts lines to dir/known_hosts.
func devCert(t *testing.T, sp *serveProcess, dir, name, tokenFile string) (key string, serial uint64) {
	t.Helper()
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	block, _ := ssh.MarshalPrivateKey(priv, "")
	key = filepath.Join(dir, name+"_ed25519")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(priv.Public())
	c, err := apiclient.NewClient(sp.api, apiclient.ClientOptions{Fingerprint: sp.fingerprint})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Certificate(context.Background(), strings.TrimSpace(string(token)), certauth.CertificateRequest{PublicKey: string(ssh.MarshalAuthorizedKey(pub))})
	if err != nil {
		t.Fatalf("certificate for %s: %v", name, err)
	}
	if err := os.WriteFile(key+"-cert.pub", []byte(resp.Certificate+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "known_hosts"), []byte(strings.Join(resp.KnownHosts, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return key, resp.Serial
}

// sshClient runs the real OpenSSH client against the bastion's front
// door, trusting its host CA only.
type sshClient struct {
	bin, port, known string
}

func (c sshClient) command(key string, args ...string) *exec.Cmd {
	base := []string{"-F", "none", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + c.known, "-o", "LogLevel=ERROR", "-p", c.port}
	return exec.Command(c.bin, append(base, args...)...)
}

// run runs ssh to completion with stdin and returns its output.
func (c sshClient) run(key, stdin string, args ...string) (string, string, error) {
	cmd := c.command(key, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// liveSSH is an ssh client left running: its stdin stays open until
// close, and its output is collected as it comes.
type liveSSH struct {
	cmd         *exec.Cmd
	stdin       io.WriteCloser
	out, errOut lockedBuffer
	done        chan error
}

// start starts ssh and waits until its output holds ready.
func (c sshClient) start(t *testing.T, key, ready string, args ...string) *liveSSH {
	t.Helper()
	l := &liveSSH{cmd: c.command(key, args...), done: make(chan error, 1)}
	l.cmd.Stdout, l.cmd.Stderr = &l.out, &l.errOut
	var err error
	if l.stdin, err = l.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { l.done <- l.cmd.Wait() }()
	t.Cleanup(func() {
		l.cmd.Process.Kill()
		<-l.done
		l.done <- nil
	})
	waitFor(t, 15*time.Second, fmt.Sprintf("ssh %s to print %q", strings.Join(args, " "), ready), func() bool {
		select {
		case err := <-l.done:
			l.done <- err
			t.Fatalf("ssh %s ended before it printed %q: %v\n%s%s", strings.Join(args, " "), ready, err, l.out.String(), l.errOut.String())
		default:
		}
		return strings.Contains(l.out.String(), ready)
	})
	return l
}

// wait waits up to d for the client to end and returns how it ended; it
// fails the test if it is still running.
func (l *liveSSH) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-l.done:
		l.done <- err
		return err
	case <-time.After(d):
		t.Fatalf("ssh %s still runs after %v:\n%s%s", strings.Join(l.cmd.Args, " "), d, l.out.String(), l.errOut.String())
		return nil
	}
}

// waitFor polls cond every 50 ms until it holds, failing the test after
// timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// jsonAt walks a decoded JSON value along object keys; nil when a key is
// missing or a value on the way is not an object.
func jsonAt(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// jsonObjects is the objects of the JSON array at keys in v.
func jsonObjects(v any, keys ...string) []map[string]any {
	a, _ := jsonAt(v, keys...).([]any)
	var objs []map[string]any
	for _, e := range a {
		if m, ok := e.(map[string]any); ok {
			objs = append(objs, m)
		}
	}
	return objs
}

// jsonString is the value at keys as text: a string as is, a number or
// boolean formatted, "" when absent.
func jsonString(v any, keys ...string) string {
	switch x := jsonAt(v, keys...).(type) {
	case nil:
		return ""
	case string:
		return x
	default:
		return fmt.Sprint(x)
	}
}
