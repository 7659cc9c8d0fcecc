package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/evidence"
)

func init() {
	register(&command{
		name:    "evidence",
		summary: "write an examiner's report of a period: access, grants, sessions, proof",
		usage:   evidenceUsage,
		run:     runEvidence,
	})
}

var evidenceUsage = `Usage:
    bastion evidence --from T --to T --out DIR [--key FILE] [--target NAME]...
                     [--db FILE] [--unrecorded] [--token-file FILE]

Writes the examiner's report of the period from --from to --to into DIR:

  evidence.html   one self-contained page (no script, nothing fetched),
                  for the screen and for print: the integrity statement,
                  a summary with its exceptions, the privileged identities,
                  grants and approvals, session activity with commands,
                  refusals, a timeline, the journal's custody, and which
                  section answers which control
  evidence.json   the same, as JSON (schema: docs/evidence.schema.json)
  checkpoint.txt  the signed checkpoint that covers the period, for the
                  verification command the report prints

It first verifies the whole journal as "bastion verify" does, with the
journal's public key; a journal that does not verify still gets its report,
which says so first, and evidence exits 1. Times are RFC 3339 or dates
(2026-11-27 is its midnight, UTC). --target keeps only the grants,
sessions and refusals of those targets. See docs/evidence.md.

` + readsParagraph("report") + `
The journal.accessed event (action evidence, the period) comes before the
report is read: the report lists itself.

Exit status: 0 the report is written and the journal is intact; 1 the
report is written and the journal does not verify; 2 no report.

Flags:
    --from T        the start of the period (required)
    --to T          the end of the period (required)
    --out DIR       the directory to write to (made if missing)
    --key FILE      the journal's public key (default: journal.pub in the
                    home directory; the report says which key it used)
    --target NAME   only this target; repeat for several
    --db FILE       the journal (default: journal.db in the home directory)
` + readFlagsUsage(20) + `

Examples:
    $ bastion evidence --from 2026-10-01 --to 2026-11-01 --out q4-evidence
    $ bastion evidence --from 2026-11-27T09:00:00Z --to 2026-11-27T17:00:00Z \
          --key /media/auditor/journal.pub --target db-prod --out db-prod-1127
    $ jq '.summary.exceptions' q4-evidence/evidence.json`

func runEvidence(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	db := fs.String("db", "", "journal `FILE`")
	keyFile := fs.String("key", "", "public key `FILE`")
	fromFlag := fs.String("from", "", "period start `T`")
	toFlag := fs.String("to", "", "period end `T`")
	out := fs.String("out", "", "output `DIR`")
	// --now fixes the report's time, for reproducible reports in tests;
	// it is not in the usage.
	nowFlag := fs.String("now", "", "")
	var targets stringsFlag
	fs.Var(&targets, "target", "only target `NAME`")
	unrecorded := e.registerReadFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageErrorf("evidence takes no arguments")
	case *fromFlag == "" || *toFlag == "" || *out == "":
		return usageErrorf("evidence needs --from, --to and --out")
	}
	from, err := parseTime(*fromFlag)
	if err != nil {
		return usageErrorf("--from: %v", err)
	}
	to, err := parseTime(*toFlag)
	if err != nil {
		return usageErrorf("--to: %v", err)
	}
	if to.Before(from) {
		return usageErrorf("--to %s is before --from %s", *toFlag, *fromFlag)
	}
	now := time.Now()
	if *nowFlag != "" {
		if now, err = parseTime(*nowFlag); err != nil {
			return usageErrorf("--now: %v", err)
		}
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		return exitCode(2, err)
	}
	v, key, path, st, err := readJournal(ctx, e, *keyFile, *db)
	if err != nil {
		return err
	}
	defer st.Close()

	attrs := recorder.Attrs{"period.from": from.UTC().Format(time.RFC3339), "period.to": to.UTC().Format(time.RFC3339), "format": "html+json"}
	if len(targets) > 0 {
		attrs["targets"] = strings.Join(targets, ",")
	}
	if err := recordRead(ctx, e, path, "evidence", attrs, *unrecorded); err != nil {
		return err
	}

	cpFile := filepath.Join(dir, "checkpoint.txt")
	rep, err := evidence.Build(ctx, st, evidence.Options{
		From: from, To: to, Targets: targets, Verifier: v, Now: now,
		Journal:       evidence.JournalInfo{Path: path, Key: key.Key, KeyFile: key.File, KeyFromHome: key.Default},
		VerifyCommand: shellJoin([]string{"bastion", "verify", "--db", path, "--key", key.File, "--checkpoint", cpFile}),
		VerifyOutput: func(r *recorder.Report) string {
			var b bytes.Buffer
			printReport(&b, path, key, r)
			return b.String()
		},
	})
	if errors.Is(err, recorder.ErrVerify) {
		return exitCode(2, err)
	}
	if err != nil {
		return exitCode(2, fmt.Errorf("evidence from %s: %w", path, err))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return exitCode(2, fmt.Errorf("evidence: %w", err))
	}
	writes := []struct {
		name  string
		write func(io.Writer) error
	}{
		{"evidence.json", func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		}},
		{"evidence.html", func(w io.Writer) error { return evidence.WriteHTML(w, rep) }},
		{"checkpoint.txt", func(w io.Writer) error { _, err := io.WriteString(w, rep.Checkpoint.Note); return err }},
	}
	for _, f := range writes {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.write); err != nil {
			return exitCode(2, fmt.Errorf("evidence: write %s: %w", f.name, err))
		}
	}
	fmt.Fprintf(e.stdout, "evidence for %s to %s written to %s\n", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), dir)
	fmt.Fprintf(e.stdout, "  %d identities, %d grants, %d sessions, %d refusals, %d exception(s), %d open item(s)\n",
		rep.Summary.Identities, rep.Summary.Grants, rep.Summary.Sessions, rep.Summary.Refusals, len(rep.Summary.Exceptions), len(rep.Summary.OpenItems))
	if !rep.Verification.Intact {
		fmt.Fprintf(e.stdout, "journal: does NOT verify (%d problem(s)); the report says so first\n", len(rep.Verification.Problems))
		return exitCode(1, nil)
	}
	fmt.Fprintf(e.stdout, "journal: intact, checkpoint of size %d covers the period\n", rep.Checkpoint.Size)
	return nil
}
