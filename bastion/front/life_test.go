package front

import (
	"context"
	"errors"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder/events"
)

var sshCertForTest = ssh.Certificate{ValidBefore: ssh.CertTimeInfinity}

// TestLifecycle: the registry's own rules, without SSH.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	lc := NewSessions(Limits{IdleTimeout: -1, MaxDuration: -1}, nil)
	info := func(serial uint64, identity string) *authInfo {
		return &authInfo{cert: &sshCertForTest, serial: serial, identity: identity, login: "ops", target: Target{Name: "box"}}
	}
	ctx1, l1, err := lc.add(context.Background(), info(1, "a@x"))
	if err != nil {
		t.Fatal(err)
	}
	ctx2, l2, _ := lc.add(context.Background(), info(2, "b@x"))
	ctx3, l3, _ := lc.add(context.Background(), info(3, "b@x"))
	l1.setID("0190aaaa-0000-7000-8000-000000000001")
	l2.setID("0190aaaa-0000-7000-8000-000000000002")
	l3.setID("0190bbbb-0000-7000-8000-000000000003")
	if len(lc.List()) != 3 {
		t.Fatalf("list: %v", lc.List())
	}
	if _, err := lc.Kill("0190aaaa", "", "", nil, nil); err == nil || errors.Is(err, ErrNoLiveSession) {
		t.Fatalf("ambiguous prefix: %v", err)
	}
	if _, err := lc.Kill("", "", "", nil, nil); !errors.Is(err, ErrNoLiveSession) {
		t.Fatalf("empty ID: %v", err)
	}
	if _, err := lc.Kill("0190BBBB", "\x1b[31mred", "op", nil, nil); err != nil {
		t.Fatal(err)
	}
	if e := endCause(ctx3); e == nil || e.reason != events.EndKilled || e.message != "the session was ended by an operator: [31mred" {
		t.Fatalf("killed: %+v", e)
	}
	ended := lc.Revoked(&certauth.RevokeResult{Identity: "a@x"})
	if len(ended) != 1 || endCause(ctx1) == nil || endCause(ctx1).reason != events.EndRevoked || endCause(ctx2) != nil {
		t.Fatalf("revoked: %v", ended)
	}
	for _, l := range []*liveSession{l1, l3} {
		lc.remove(l)
	}
	if n := lc.Shutdown(); n != 1 || endCause(ctx2).reason != events.EndShutdown {
		t.Fatalf("shutdown ended %d", n)
	}
	lc.remove(l2)
	if _, _, err := lc.add(context.Background(), info(4, "c@x")); !errors.Is(err, errShuttingDown) {
		t.Fatalf("add after shutdown: %v", err)
	}
	if lc.Count() != 0 {
		t.Fatalf("%d live", lc.Count())
	}
}
