package main

// The conformance corpus, testdata/conformance: journals and bundles,
// intact and damaged in each way docs/journal-format.md names, each with
// the verdict and the first problem's location that "bastion verify
// --json" gives. An implementation of the document must give the same.
//
// Without -update-conformance, the test runs bastion over the corpus as
// it is committed and compares. With it, the corpus is rebuilt: the base
// journal is recorded through the real writer, then copied and damaged in
// plain SQL, and the journals that the writer refuses to write (signed
// records that break the payload or time rules) are built from the
// encoders with the corpus's published test key.

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var updateConformance = flag.Bool("update-conformance", false, "rebuild testdata/conformance")

const (
	conformanceDir = "../../testdata/conformance"
	// The corpus's keys are TEST KEYS, published so that anyone can
	// rebuild the corpus or sign more cases. They sign nothing real.
	conformanceKey = "PRIVATE+KEY+conformance.example/journal+a53b5f18+AUNtb/7TV7AeDoHlo6gKUKXcplqEb/4XSTwLH2xC4pOl"
	// conformanceOther has the journal key's name, and is another key.
	conformanceOther   = "PRIVATE+KEY+conformance.example/journal+803b5378+AYiCfpa+iZM0+JxG0hM55W6lhCPV+na3bhmggubZzFWb"
	conformanceWitness = "PRIVATE+KEY+witness.example/w1+dabd8815+AUw67m8ecXcWD7aWN/kUVvNWBYnqCkEmODptQPD27ufh"
)

// conformanceCase is one entry of cases.json.
type conformanceCase struct {
	Name       string `json:"name"`
	Journal    string `json:"journal,omitempty"`
	Bundle     string `json:"bundle,omitempty"`
	Key        string `json:"key"`
	Checkpoint string `json:"checkpoint,omitempty"`
	Session    string `json:"session,omitempty"`
	// Exit is bastion verify's exit status; Intact its verdict.
	Exit   int  `json:"exit"`
	Intact bool `json:"intact"`
	// FirstLeaf is the first problem's location (section 10), for a
	// journal that does not verify; FirstWhere and FirstWhat are
	// bastion's words for it, for reading.
	FirstLeaf  *int64 `json:"first_leaf,omitempty"`
	FirstWhere string `json:"first_where,omitempty"`
	FirstWhat  string `json:"first_what,omitempty"`
	// Problem is the failure bastion names for a bundle.
	Problem string `json:"problem,omitempty"`
}

type conformanceFile struct {
	Comment string            `json:"comment"`
	Spec    string            `json:"spec"`
	Cases   []conformanceCase `json:"cases"`
}

func TestConformanceCorpus(t *testing.T) {
	t.Parallel()
	if *updateConformance {
		buildConformance(t)
	}
	b, err := os.ReadFile(filepath.Join(conformanceDir, "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cf conformanceFile
	if err := json.Unmarshal(b, &cf); err != nil {
		t.Fatal(err)
	}
	if len(cf.Cases) < 50 {
		t.Fatalf("only %d cases", len(cf.Cases))
	}
	for _, c := range cf.Cases {
		t.Run(c.Name, func(t *testing.T) {
			got := runConformance(t, c)
			if got.Exit != c.Exit || got.Intact != c.Intact || !sameLeaf(got.FirstLeaf, c.FirstLeaf) {
				t.Errorf("got exit %d, intact %v, first leaf %s (%s: %s); the corpus says exit %d, intact %v, first leaf %s",
					got.Exit, got.Intact, leafString(got.FirstLeaf), got.FirstWhere, got.FirstWhat, c.Exit, c.Intact, leafString(c.FirstLeaf))
			}
		})
	}
}

func sameLeaf(a, b *int64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func leafString(p *int64) string {
	if p == nil {
		return "none"
	}
	return fmt.Sprint(*p)
}

// runConformance runs bastion verify on a case, as it is in the corpus,
// and returns the case as bastion sees it. It works on a copy: a reader
// never writes, but SQLite may leave files beside a journal it opens.
func runConformance(t *testing.T, c conformanceCase) conformanceCase {
	t.Helper()
	tmp := t.TempDir()
	key := filepath.Join(conformanceDir, c.Key)
	// An independent verifier's case: a copy, verified away from the
	// bastion, which has no writer to record the read.
	args := []string{"--home", filepath.Join(tmp, "home"), "verify", "--unrecorded", "--json", "--key", key}
	if c.Bundle != "" {
		args = append(args, "--bundle", filepath.Join(conformanceDir, c.Bundle))
	} else {
		db := filepath.Join(tmp, "journal.db")
		data, err := os.ReadFile(filepath.Join(conformanceDir, c.Journal))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(db, data, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--db", db)
		if c.Checkpoint != "" {
			args = append(args, "--checkpoint", filepath.Join(conformanceDir, c.Checkpoint))
		}
		if c.Session != "" {
			args = append(args, "--session", c.Session)
		}
	}
	code, stdout, stderr := runArgs(args...)
	out := c
	out.Exit, out.FirstLeaf, out.FirstWhere, out.FirstWhat, out.Problem = code, nil, "", "", ""
	if code == 2 {
		out.Intact = false
		return out
	}
	if c.Bundle != "" {
		var r struct {
			Intact  bool   `json:"intact"`
			Problem string `json:"problem"`
		}
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("verify --bundle --json: %v\n%s%s", err, stdout, stderr)
		}
		out.Intact, out.Problem = r.Intact, r.Problem
		return out
	}
	var r tamperReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("verify --json: %v\n%s%s", err, stdout, stderr)
	}
	out.Intact = r.Intact
	if len(r.Problems) > 0 {
		leaf := r.Problems[0].Leaf
		out.FirstLeaf, out.FirstWhere, out.FirstWhat = &leaf, r.Problems[0].Where, r.Problems[0].What
	}
	return out
}
