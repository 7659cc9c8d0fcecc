package recorder

import (
	"fmt"
	"strings"
	"time"

	"github.com/bastionhq/bastion/recorder/witness"
)

// Witnesses are the witnesses an auditor trusts, by their cosignature
// keys, and how many of them must cosign a checkpoint for it to count as
// witnessed (docs/journal-format.md, 8.4 and 10 step 7a).
type Witnesses struct {
	Keys []*witness.Key
	// Threshold is how many distinct Keys must cosign; 0 means all.
	Threshold int
}

// threshold is the number of cosignatures required.
func (w Witnesses) threshold() int {
	if w.Threshold > 0 {
		return w.Threshold
	}
	return len(w.Keys)
}

// Check reports whether w can be used: at least one key, no key twice,
// and a threshold from 1 to the number of keys.
func (w Witnesses) Check() error {
	if len(w.Keys) == 0 {
		if w.Threshold != 0 {
			return fmt.Errorf("a witness threshold of %d, but no witness key", w.Threshold)
		}
		return nil
	}
	seen := map[string]bool{}
	for _, k := range w.Keys {
		id := fmt.Sprintf("%s+%08x", k.Name, k.Hash)
		if seen[id] {
			return fmt.Errorf("witness key %s is given twice", id)
		}
		seen[id] = true
	}
	if w.Threshold < 0 || w.Threshold > len(w.Keys) {
		return fmt.Errorf("a witness threshold of %d with %d witness key(s): it must be from 1 to %d", w.Threshold, len(w.Keys), len(w.Keys))
	}
	return nil
}

// WitnessReport is what verification found of the witnesses' cosignatures
// on the journal's published checkpoints.
type WitnessReport struct {
	// Threshold is how many distinct witnesses must cosign a checkpoint.
	Threshold int `json:"threshold"`
	// Live is true when a running writer held the journal: it pushes
	// its checkpoints to the witnesses, so the latest not being
	// cosigned yet is lag, not a problem.
	Live      bool             `json:"live"`
	Witnesses []WitnessSummary `json:"witnesses"`
	// Size is the witnessed size: the largest size of a valid published
	// checkpoint that valid cosignatures by at least Threshold of the
	// witnesses carry (0: none). Cosignatures are those on it, Note is
	// its note.
	Size         int64             `json:"witnessed_size"`
	Cosignatures []CosignatureInfo `json:"cosignatures"`
	Note         string            `json:"checkpoint,omitempty"`
	// Unwitnessed counts the leaves at or after Size.
	Unwitnessed int64 `json:"unwitnessed"`
	// LatestSize is the size of the latest valid published checkpoint
	// (0: none), and LatestCosigners the witnesses whose valid
	// cosignatures it carries.
	LatestSize      int64    `json:"latest_published"`
	LatestCosigners []string `json:"latest_cosigners"`
	// ReadsFrom is, when the leaves from it to the end are all reads a
	// reader recorded itself (journal.accessed or evidence.generated
	// with via = reader), the first of them; else the tree size. Such
	// reads are written while no server runs, and no server pushes them.
	ReadsFrom int64 `json:"reads_from"`
}

// WitnessSummary is what one witness cosigned.
type WitnessSummary struct {
	Name      string `json:"name"`
	Key       string `json:"key"`
	Algorithm string `json:"algorithm"`
	// Cosigned is how many valid published checkpoints carry a valid
	// cosignature by it; Largest the largest of their sizes, and
	// LargestAt the time of its cosignature there.
	Cosigned  int        `json:"checkpoints_cosigned"`
	Largest   int64      `json:"largest_size"`
	LargestAt *time.Time `json:"largest_cosigned_at,omitempty"`
	// Invalid counts its lines that do not verify (forged or damaged).
	Invalid int `json:"invalid_lines"`
}

// CosignatureInfo is one valid cosignature: the witness and the time it
// states (whole seconds, UTC).
type CosignatureInfo struct {
	Witness string    `json:"witness"`
	Key     string    `json:"key"`
	Time    time.Time `json:"time"`
}

// publishedCheckpoint is a valid published checkpoint, as verification found it.
type publishedCheckpoint struct {
	size int64
	note []byte
}

// CosignatureCheck is the result of checking one checkpoint note's
// cosignatures against the auditor's witnesses.
type CosignatureCheck struct {
	Threshold int               `json:"threshold"`
	Valid     []CosignatureInfo `json:"cosignatures"`
	// Missing names the witnesses with no valid cosignature on it.
	Missing []string `json:"missing"`
	// Invalid lists the lines by the witnesses' keys that do not verify.
	Invalid []string `json:"invalid"`
}

// Met reports whether enough witnesses cosigned and no line by one of
// them is bad.
func (c *CosignatureCheck) Met() bool { return len(c.Valid) >= c.Threshold && len(c.Invalid) == 0 }

// Problem says why the check is not met, or "".
func (c *CosignatureCheck) Problem() string {
	var out []string
	if len(c.Invalid) > 0 {
		out = append(out, strings.Join(c.Invalid, "; ")+" (forged or damaged)")
	}
	if len(c.Valid) < c.Threshold {
		out = append(out, fmt.Sprintf("the checkpoint carries valid cosignatures by %d of the %d witnesses required (missing: %s)",
			len(c.Valid), c.Threshold, strings.Join(c.Missing, ", ")))
	}
	return strings.Join(out, "; ")
}

// CheckCosignatures checks the cosignatures a checkpoint note carries
// against w. Lines by other keys are ignored (8.2 rule 5).
func CheckCosignatures(note []byte, w Witnesses) *CosignatureCheck {
	valid, bad := witness.Cosignatures(note, w.Keys)
	c := &CosignatureCheck{Threshold: w.threshold(), Valid: []CosignatureInfo{}, Missing: []string{}, Invalid: []string{}}
	got := map[*witness.Key]bool{}
	for _, cs := range valid {
		got[cs.Key] = true
		c.Valid = append(c.Valid, CosignatureInfo{Witness: cs.Key.Name, Key: cs.Key.VKey, Time: cs.Time})
	}
	for _, k := range w.Keys {
		if !got[k] {
			c.Missing = append(c.Missing, k.Name)
		}
	}
	for _, err := range bad {
		c.Invalid = append(c.Invalid, err.Error())
	}
	return c
}

// isReaderRead reports whether l is a read that the reading process
// recorded itself: no server held the journal, so none will push it to
// the witnesses until one starts again.
func isReaderRead(l *Leaf) bool {
	return l.Type == LeafEvent && (l.Event == EventJournalAccessed || l.Event == EventEvidenceGenerated) && l.Attrs["via"] == "reader"
}

// witnessed checks the witnesses' cosignatures on the valid published
// checkpoints (in increasing size) and finds the witnessed size. Its
// problems prove no record bad: they are at the tree size.
func (v *verifier) witnessed() {
	w := v.opts.Witnesses
	if len(w.Keys) == 0 {
		return
	}
	t := w.threshold()
	rep := &WitnessReport{Threshold: t, Live: v.opts.Live, Witnesses: []WitnessSummary{}, Cosignatures: []CosignatureInfo{},
		LatestCosigners: []string{}, ReadsFrom: v.readsFrom}
	v.r.Witnessed = rep
	sums := make(map[*witness.Key]*WitnessSummary, len(w.Keys))
	for _, k := range w.Keys {
		rep.Witnesses = append(rep.Witnesses, WitnessSummary{Name: k.Name, Key: k.VKey, Algorithm: k.Alg})
	}
	for i, k := range w.Keys {
		sums[k] = &rep.Witnesses[i]
	}
	where := func(size int64) string { return fmt.Sprintf("checkpoint at tree size %d", size) }
	for _, p := range v.published {
		text, lines, _ := witness.NoteSignatures(p.note)
		var valid []witness.Cosignature
		for _, k := range w.Keys {
			got := false
			for _, l := range lines {
				if !k.Owns(l) {
					continue
				}
				c, err := k.Verify(text, l)
				if err != nil {
					sums[k].Invalid++
					v.problem(v.r.TreeSize, where(p.size), "a cosignature line by witness %s (key hash %08x) does not verify: %v (forged or damaged)", k.Name, k.Hash, err)
					continue
				}
				if !got {
					got = true
					valid = append(valid, c)
				}
			}
		}
		var names []string
		for _, c := range valid {
			s := sums[c.Key]
			s.Cosigned++
			if p.size >= s.Largest {
				at := c.Time
				s.Largest, s.LargestAt = p.size, &at
			}
			names = append(names, c.Key.Name)
		}
		rep.LatestSize, rep.LatestCosigners = p.size, append([]string{}, names...)
		if len(valid) >= t {
			rep.Size, rep.Note = p.size, string(p.note)
			rep.Cosignatures = rep.Cosignatures[:0]
			for _, c := range valid {
				rep.Cosignatures = append(rep.Cosignatures, CosignatureInfo{Witness: c.Key.Name, Key: c.Key.VKey, Time: c.Time})
			}
		}
	}
	rep.Unwitnessed = v.r.TreeSize - rep.Size
	n := v.r.TreeSize
	switch {
	case n == 0 || v.opts.UnwitnessedFacts:
	case rep.Size == 0:
		v.problem(n, "journal", "no published checkpoint carries valid cosignatures by %d of the %d witnesses given: none of its %d leaves is witnessed", t, len(w.Keys), n)
	case !rep.Live && rep.Size < rep.ReadsFrom:
		// The writer is stopped: it pushed what it will ever push, so
		// what no witness cosigned never will be (but reads recorded
		// since by readers, which no server pushes).
		what := fmt.Sprintf("not witnessed: the latest published checkpoint (tree size %d) has %d of the %d cosignatures required", rep.LatestSize, len(rep.LatestCosigners), t)
		if len(rep.LatestCosigners) > 0 {
			what += ": " + strings.Join(rep.LatestCosigners, ", ")
		}
		if rep.LatestSize < rep.ReadsFrom {
			what = fmt.Sprintf("not witnessed: leaves %d..%d are in no published checkpoint", rep.LatestSize, rep.ReadsFrom-1)
			if rep.LatestSize > rep.Size {
				what += fmt.Sprintf(", and the latest one (tree size %d) has %d of the %d cosignatures required", rep.LatestSize, len(rep.LatestCosigners), t)
			}
		}
		what += "; no writer holds the journal, so no server will push them to the witnesses"
		if rep.ReadsFrom < n {
			what += fmt.Sprintf(" (leaves %d..%d after them are reads recorded by their readers since, which need none)", rep.ReadsFrom, n-1)
		}
		v.problem(n, fmt.Sprintf("leaves %d..%d", rep.Size, rep.ReadsFrom-1), "%s", what)
	}
}
