package recorder

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/bastionhq/bastion/storage"
)

// fixtureBundle exports the first session of the fixed journal in
// testdata/play (made by recorder/playback's TestGolden).
func fixtureBundle(t testing.TB) ([]byte, *Bundle) {
	data, err := os.ReadFile("../testdata/play/journal.db")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "journal.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
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
	rows, err := snap.Sessions(ctx)
	if err != nil || len(rows) == 0 {
		t.Fatal(err)
	}
	b, err := ExportBundle(ctx, snap, SessionID(rows[0].ID), fixtureVerifier(t))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return enc, b
}

func fixtureVerifier(t testing.TB) note.Verifier {
	pub, err := os.ReadFile("../testdata/play/journal.pub")
	if err != nil {
		t.Fatal(err)
	}
	v, err := ParseVerifierKey(string(pub))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestBundleRejectsRewrites(t *testing.T) {
	data, b := fixtureBundle(t)
	v := fixtureVerifier(t)
	if _, err := VerifyBundle(data, v); err != nil {
		t.Fatal(err)
	}
	mutate := map[string]func(b *Bundle){
		"a frame dropped": func(b *Bundle) { b.Frames = b.Frames[:len(b.Frames)-1] },
		"frames swapped":  func(b *Bundle) { b.Frames[1], b.Frames[2] = b.Frames[2], b.Frames[1] },
		"the last segment gone": func(b *Bundle) {
			b.Leaves = append(b.Leaves[:len(b.Leaves)-2:len(b.Leaves)-2], b.Leaves[len(b.Leaves)-1])
		},
		"a segment gone":      func(b *Bundle) { b.Leaves = append(b.Leaves[:2:2], b.Leaves[3:]...) },
		"leaves reordered":    func(b *Bundle) { b.Leaves[1], b.Leaves[2] = b.Leaves[2], b.Leaves[1] },
		"another session":     func(b *Bundle) { b.Session = "01a21c86-e5b7-7bbc-bbfe-000000000000" },
		"no leaves or frames": func(b *Bundle) { b.Leaves, b.Frames = nil, nil },
	}
	for name, m := range mutate {
		t.Run(name, func(t *testing.T) {
			c := *b
			c.Leaves = append([]BundleLeaf(nil), b.Leaves...)
			c.Frames = append([]BundleFrame(nil), b.Frames...)
			m(&c)
			enc, err := c.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := VerifyBundle(enc, v); err == nil {
				t.Error("verified")
			}
		})
	}
}

// A bundle cannot prove that no leaf follows its last one: without its end
// leaf, it verifies as the bundle of a session that had not ended, and
// says so.
func TestBundleWithoutEnd(t *testing.T) {
	_, b := fixtureBundle(t)
	b.Leaves = b.Leaves[:len(b.Leaves)-1]
	enc, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyBundle(enc, fixtureVerifier(t))
	if err != nil || rep.Ended {
		t.Errorf("report %+v, err %v; want a verified, unterminated session", rep, err)
	}
}

// FuzzVerifyBundle: no input makes the verifier panic, and only the
// bundle bastion wrote verifies.
func FuzzVerifyBundle(f *testing.F) {
	data, _ := fixtureBundle(f)
	v := fixtureVerifier(f)
	f.Add(data)
	f.Add([]byte(`{"format":"bastion-session-bundle-v1"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		if _, err := VerifyBundle(in, v); err == nil && string(in) != string(data) {
			t.Errorf("a bundle other than the one exported verified")
		}
	})
}
