package bastion

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/storage"
)

// recoveringFront is a front door whose server may open its journal
// again after a fault (as serve does), and how to read that journal from
// outside.
func recoveringFront(t *testing.T) (*frontFixture, func(name string) []recorder.Attrs) {
	t.Helper()
	var key *recorder.JournalKey
	var path string
	fx := startFrontEdit(t, "ops", frontConfig, func(o *ServerOptions) {
		path = filepath.Join(o.Home, "journal.db")
		var err error
		if key, err = certauth.LoadJournalKey(o.Home); err != nil {
			t.Fatal(err)
		}
		st := o.Store.(*storage.SQLite)
		j := o.Journal
		o.CloseJournal = func() error { return errors.Join(j.Close(), st.Close()) }
		o.ReopenJournal = func(ctx context.Context) (*recorder.Journal, func() error, error) {
			st, err := storage.OpenSQLite(ctx, path, storage.Options{})
			if err != nil {
				return nil, nil, err
			}
			j, err := recorder.Open(ctx, st, recorder.Options{Key: key})
			if err != nil {
				st.Close()
				return nil, nil, err
			}
			return j, func() error { return errors.Join(j.Close(), st.Close()) }, nil
		}
	})
	events := func(name string) []recorder.Attrs {
		ctx := context.Background()
		st, err := storage.OpenSQLite(ctx, path, storage.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		snap, err := st.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Close()
		evs, err := recorder.Events(ctx, snap, key.Verifier, name)
		if err != nil {
			t.Fatal(err)
		}
		var out []recorder.Attrs
		for _, e := range evs {
			out = append(out, e.Leaf.Attrs)
		}
		return out
	}
	return fx, events
}

// TestJournalRecoversFromLock: another process holds the journal's
// database locked for 14 s, past the 10 s busy timeout, while a session
// records. The journal fails, the session ends, and serve, without a
// restart, closes the journal and opens it again once the lock is gone:
// the session's end is recorded, a journal.recovered event says what
// happened, and a new session works. The journal verifies.
func TestJournalRecoversFromLock(t *testing.T) {
	if testing.Short() {
		t.Skip("holds a lock for 14 s")
	}
	fx, events := recoveringFront(t)
	if out, code := fx.ssh(t, fx.key, "ops@box", "echo before"); code != 0 || !strings.Contains(out, "before") {
		t.Fatalf("before the fault: %d %q", code, out)
	}
	live := fx.sshStart(t, fx.key, "ops@box", "echo started; while sleep 0.2; do echo tick; done")
	fx.waitLive(t, 1, live)

	db, err := sql.Open("sqlite3", "file:"+filepath.Join(fx.ts.home, "journal.db")+"?_busy_timeout=0")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	locked := time.Now()
	// The live session's output cannot be committed: past the busy
	// timeout the journal fails, and the session ends.
	if code := live.wait(t); code != 255 {
		t.Fatalf("the session under the lock exited %d: %q", code, live.stderr.String())
	}
	time.Sleep(time.Until(locked.Add(14 * time.Second)))
	if _, err := conn.ExecContext(context.Background(), "COMMIT"); err != nil {
		t.Fatal(err)
	}
	conn.Close()

	var rec []recorder.Attrs
	for deadline := time.Now().Add(30 * time.Second); len(rec) == 0 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if fx.ts.journal.Err() == nil {
			continue
		}
		rec = events(EventJournalRecovered)
	}
	if len(rec) != 1 || !strings.Contains(rec[0]["cause"], "locked") || rec[0]["sessions-ended"] != "1" || rec[0]["first-failure"] == "" {
		t.Fatalf("journal.recovered events: %v", rec)
	}
	if out, code := fx.ssh(t, fx.key, "ops@box", "echo after"); code != 0 || !strings.Contains(out, "after") {
		t.Fatalf("after the recovery: %d %q", code, out)
	}
	// Ready again, and the alarm of the failed write cleared.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, body := getHealth(t, fx.ts, "/readyz")
		if code == 200 && body["journal"] == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after the recovery: %d %v", code, body)
		}
	}
	fx.ts.stop(t)
	st, err := storage.OpenSQLite(context.Background(), filepath.Join(fx.ts.home, "journal.db"), storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rep, err := recorder.Verify(context.Background(), st, recorder.VerifyOptions{Verifier: fx.ts.key.Verifier})
	if err != nil || !rep.Intact() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// TestJournalRecoveryGivesUp: a journal that cannot be opened again within
// journal_recovery ends Run with an error (serve exits non-zero, for a
// supervisor to restart it).
func TestJournalRecoveryGivesUp(t *testing.T) {
	m := startOP(t)
	var st *storage.SQLite
	ts := startServerWith(t, m, strings.Replace(e2eConfig, "%LOGIN%", "ops", 1)+"journal_recovery = \"1s\"\n", certauth.AlgorithmEd25519, serverTweaks{edit: func(o *ServerOptions) {
		st = o.Store.(*storage.SQLite)
		o.ReopenJournal = func(ctx context.Context) (*recorder.Journal, func() error, error) {
			return nil, nil, errors.New("the disk is gone")
		}
	}})
	// Serving (serve.started is journaled before the API answers), then
	// the store closed underneath: the next write fails the journal.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, _ := getHealth(t, ts, "/healthz"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not start")
		}
	}
	st.Close()
	ts.journal.AppendEvent(context.Background(), "test.event", recorder.Attrs{"a": "b"})
	select {
	case err := <-ts.done:
		if err == nil || !strings.Contains(err.Error(), "could not be opened again within 1s") || !strings.Contains(err.Error(), "the disk is gone") {
			t.Fatalf("Run returned %v", err)
		}
		ts.cancel = nil
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not end")
	}
}
