package recorder

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/bastionhq/bastion/recorder/termtext"
)

// KeyInfo says which public key a verification used, so that its output
// never hides it: anyone who can rewrite the journal may also have
// replaced the key in the bastion's home.
type KeyInfo struct {
	File    string `json:"file"`
	Key     string `json:"key"`
	Default bool   `json:"from_home"`
	// Cluster says File is a cluster file, which names every member's
	// key, rather than one key's file.
	Cluster bool `json:"cluster_file,omitempty"`
}

// WriteText writes r as "bastion verify" prints it, for the journal
// named path, verified with key.
func (r *Report) WriteText(w io.Writer, path string, key KeyInfo) {
	fmt.Fprintf(w, "journal %s\n", path)
	fmt.Fprintf(w, "  log:          %s\n", termtext.Line(r.Origin))
	fmt.Fprintf(w, "  key:          %s (%s)\n", key.Key, key.File)
	switch {
	case key.Default && key.Cluster:
		fmt.Fprintf(w, "                the cluster file in the bastion's home: an auditor passes the cluster file they were given, with --cluster\n")
	case key.Default:
		fmt.Fprintf(w, "                the key in the bastion's home: an auditor passes the key they were given, with --key\n")
	}
	fmt.Fprintf(w, "  leaves:       %d (%d sessions, %d events)\n", r.TreeSize, r.Sessions, r.Events)
	fmt.Fprintf(w, "  frames:       %d checked in %d sessions, %s of payload\n", r.Frames, r.SessionsRead, ByteCount(r.PayloadBytes))
	fmt.Fprintf(w, "  checkpoints:  %d valid; the latest covers %d of %d leaves\n", r.Checkpoints, r.Covered, r.TreeSize)
	if r.Root != "" {
		fmt.Fprintf(w, "  root:         %s\n", r.Root)
	}
	if k := r.Kept; k != nil {
		if k.Consistent {
			fmt.Fprintf(w, "  kept checkpoint: size %d, consistent: proved to size %d with %d hashes\n", k.Size, k.ProvedTo, k.ProofHashes)
		} else {
			fmt.Fprintf(w, "  kept checkpoint: size %d, NOT consistent\n", k.Size)
		}
	}
	if len(r.Unterminated) > 0 {
		fmt.Fprintf(w, "  unterminated: %d session(s) without an end record (the recorder crashed, was killed, or is still running; not tampering by itself):\n", len(r.Unterminated))
		for _, s := range r.Unterminated {
			fmt.Fprintf(w, "    %s  started at leaf %d, %d frames committed\n", termtext.Line(s.ID), s.StartLeaf, s.Frames)
		}
	}
	if len(r.Abandoned) > 0 {
		fmt.Fprintf(w, "  abandoned:    %d session(s) closed after their recorder stopped:\n", len(r.Abandoned))
		for _, s := range r.Abandoned {
			fmt.Fprintf(w, "    %s  started at leaf %d, closed at leaf %d after %d frames\n", termtext.Line(s.ID), s.StartLeaf, s.EndLeaf, s.Frames)
		}
	}
	r.writeWitnessed(w)
	switch {
	case r.Kept == nil && r.Witnessed != nil:
		fmt.Fprintln(w, "  not checked:  rollback to an older copy, which keeps the cosignatures it had; pass --checkpoint FILE, the latest")
		fmt.Fprintln(w, "                checkpoint a witness cosigned (\"bastion witness latest\") or one kept earlier")
	case r.Kept == nil:
		fmt.Fprintln(w, "  not checked:  truncation and rollback to an older copy; pass --checkpoint FILE, a checkpoint kept earlier")
	}
	if r.Intact() {
		fmt.Fprintln(w, "result: intact")
		return
	}
	if r.SignedBy != "" {
		// Every checkpoint fails under the key, and the leaves they
		// covered are uncovered: one finding, said once.
		fmt.Fprintf(w, "result: FAILED: the key given (%s, from %s) is not this journal's: its checkpoints are signed by %s, or were replaced; pass the journal's own public key with --key (--json lists all %d problems)\n",
			termtext.Line(KeyName(key.Key)), key.File, termtext.Line(r.SignedBy), len(r.Problems))
		return
	}
	fmt.Fprintf(w, "result: FAILED, %d problem(s)\n", len(r.Problems))
	fmt.Fprintf(w, "first bad record: %s\n", termtext.Line(r.Problems[0].String()))
	if len(r.Problems) > 1 {
		fmt.Fprintln(w, "all problems:")
		for _, p := range r.Problems {
			fmt.Fprintf(w, "  - %s\n", termtext.Line(p.String()))
		}
	}
}

// KeyName is "NAME KEYHASH" of a verifier key NAME+KEYHASH+KEY, the way
// the journal names the key that signed its checkpoints.
func KeyName(vkey string) string {
	name, rest, _ := strings.Cut(vkey, "+")
	hash, _, _ := strings.Cut(rest, "+")
	return name + " " + hash
}

// writeWitnessed writes what the witnesses given cosigned, if any were.
func (r *Report) writeWitnessed(w io.Writer) {
	wr := r.Witnessed
	if wr == nil {
		return
	}
	fmt.Fprintf(w, "  witnesses:    %d given, %d must cosign a checkpoint\n", len(wr.Witnesses), wr.Threshold)
	for _, s := range wr.Witnesses {
		what := "cosigned no published checkpoint"
		if s.Cosigned > 0 {
			what = fmt.Sprintf("cosigned %d published checkpoint(s), the largest of size %d at %s", s.Cosigned, s.Largest, s.LargestAt.Format(time.RFC3339))
		}
		if s.Invalid > 0 {
			what += fmt.Sprintf("; %d line(s) by its key do NOT verify", s.Invalid)
		}
		fmt.Fprintf(w, "    %s (%s): %s\n", termtext.Line(s.Name), s.Algorithm, what)
	}
	if wr.Size == 0 {
		fmt.Fprintf(w, "  witnessed:    nothing: no published checkpoint carries %d valid cosignatures\n", wr.Threshold)
	} else {
		fmt.Fprintf(w, "  witnessed:    size %d, cosigned by %s\n", wr.Size, Cosigners(wr.Cosignatures))
	}
	if wr.Unwitnessed == 0 {
		return
	}
	why := "see the problems below"
	switch {
	case wr.Live:
		why = "a server holds the journal and pushes its checkpoints to the witnesses about once a second: lag, not a problem"
	case wr.Size > 0 && wr.Size >= wr.ReadsFrom:
		why = "reads recorded by their readers since the server stopped, which no server pushes: not a problem"
	}
	fmt.Fprintf(w, "  unwitnessed:  leaves %d..%d (%d); %s\n", wr.Size, r.TreeSize-1, wr.Unwitnessed, why)
}

// Cosigners lists cosignatures as "NAME at TIME, ...".
func Cosigners(cs []CosignatureInfo) string {
	var out []string
	for _, c := range cs {
		out = append(out, termtext.Line(c.Witness)+" at "+c.Time.Format(time.RFC3339))
	}
	if len(out) == 0 {
		return "none of the witnesses given"
	}
	return strings.Join(out, ", ")
}
