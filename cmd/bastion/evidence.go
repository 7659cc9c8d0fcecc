package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/evidence"
	"github.com/bastionhq/bastion/recorder/sessions"
	"github.com/bastionhq/bastion/recorder/termtext"
	"github.com/bastionhq/bastion/storage"
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
    bastion evidence --from T --to T --out DIR [--key FILE | --cluster FILE]
                     [--checkpoint FILE] [--witness VKEY]...
                     [--witness-threshold N]
                     [--target NAME]... [--identity ID]... [--sample N [--seed S]]
                     [--force] [--db FILE] [--unrecorded] [--token-file FILE]
                     [--server URL [--ca-fingerprint SHA256:X]]

Writes the examiner's report of the period from --from to --to into DIR:

  evidence.html   one self-contained page (no script, nothing fetched),
                  for the screen and for print: the integrity statement,
                  a summary with its exceptions, the privileged identities,
                  grants and approvals, the policy in force, session
                  activity with commands, refusals, a timeline, the
                  journal's custody and who read it, a reviewer's sign-off
                  form, and which section answers which control
  evidence.json   the same, as JSON (schema: docs/evidence.schema.json)
  checkpoint.txt  the signed checkpoint that covers the period, for the
                  verification command the report prints
  evidence.sig    a note signed with the journal's key over the SHA-256 of
                  evidence.html and evidence.json, which are also recorded
                  in the journal (an evidence.generated record)
  bundles/        a verifiable bundle of each session reviewed in detail

It first verifies the whole journal as "bastion verify" does, with the
journal's public key; a journal that does not verify still gets its report,
which says so first, and evidence exits 1. Times are RFC 3339 or dates
(2026-11-27 is its midnight, UTC). --target keeps only the grants,
sessions and refusals of those targets, --identity those of those
identities; a target or identity the journal never names is an error
(exit 1), with the nearest name it does. See docs/evidence.md.

What the verdict rests on is on the cover: amber when only the journal's
own head vouches for it (whoever controls the bastion's host could roll it
back or rewrite it), green with --checkpoint FILE, a checkpoint you kept
outside that host after the period ended ("bastion checkpoint" prints
one), that the journal is proven to extend (amber still with one that
covers only part of the period); red when the journal does not verify.
With --witness, the cosignature keys of witnesses you trust (and
--witness-threshold N, default all of them), it rests on the witnesses:
green when a checkpoint N of them cosigned covers the period (the cover
names them, the checkpoint and when they cosigned it), amber when none
does. With both, the cover says which rests on which.

--sample N picks N sessions of the period for detailed review, the same N
for the same --seed: those with the smallest SHA-256 of "SEED:ID". Every
session an exception names is detailed too; the others are counted per
identity. Without --sample every session is detailed.

` + clusterParagraph + `

A cluster's report is one report over every member's log: DIR/member-ID
holds each member's full report (the files above, verified with that
member's key only, against its own checkpoint), and DIR/evidence.html and
DIR/evidence.json are the cluster's: an integrity statement that names
every log, its key and the checkpoint it rests on, then one section per
member (its verdict, anchor, checkpoint and counts). A log the cluster
file does not name, or a member whose log is missing or does not verify,
makes the report say so first, and evidence exit 1. A --checkpoint
anchors the log of its origin; --target and --identity must be named by
some member's log.

` + readsParagraph("report") + `
The journal.accessed event (action evidence, the period) comes before the
report is read: the report lists itself.

Exit status: 0 the report is written and the journal is intact; 1 the
report is written and the journal does not verify, or it is written but
could not be recorded (no evidence.sig), or no report: a --target or
--identity names nothing in the journal; 2 no report (a
bad flag, no journal or key, an existing --out directory without
--force).

Flags:
    --from T        the start of the period (required)
    --to T          the end of the period (required)
    --out DIR       the directory to write to (made if missing; an existing
                    one that is not empty is refused without --force)
    --force         write into an existing --out directory, replacing the
                    report's files there
    --key FILE      the journal's public key (default: journal.pub in the
                    home directory; the report says which key it used)
    --checkpoint FILE
                    a checkpoint kept outside the bastion's host, which the
                    journal must extend: the report's anchor
    --witness VKEY  a witness's cosignature verifier key, or a file that
                    holds one; repeat for several: the report's anchor
    --witness-threshold N
                    how many of the witnesses must cosign (default: all)
    --target NAME   only this target; repeat for several
    --identity ID   only this identity (SUBJECT@PROVIDER); repeat for several
    --sample N      review N sampled sessions in detail (and every exception)
    --seed S        the sample's seed, an integer (default 0)
    --db FILE       the journal (default: journal.db in the home directory)
` + readFlagsUsage(20) + "\n" + clusterFlagUsage(20) + `

Examples:
    $ bastion evidence --from 2026-10-01 --to 2026-11-01 --out q4-evidence
    $ bastion evidence --from 2026-07-01 --to 2026-10-01 --sample 25 --seed 20261001 \
          --checkpoint /media/auditor/checkpoint-2026-10-01.txt --out q3-evidence
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
	kept := fs.String("checkpoint", "", "kept checkpoint `FILE`")
	force := fs.Bool("force", false, "write into an existing --out directory")
	sample := fs.Int("sample", 0, "sessions `N` to review in detail")
	seed := fs.Int64("seed", 0, "the sample's seed `S`")
	var targets, identities stringsFlag
	fs.Var(&targets, "target", "only target `NAME`")
	fs.Var(&identities, "identity", "only identity `ID`")
	wf := registerWitnessFlags(fs)
	unrecorded := e.registerReadFlags(fs)
	clusterFlag := registerClusterFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ws, err := wf.witnesses()
	if err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageErrorf("evidence takes no arguments")
	case *fromFlag == "" || *toFlag == "" || *out == "":
		return usageErrorf("evidence needs --from, --to and --out")
	case *sample < 0:
		return usageErrorf("--sample %d: give a positive number of sessions", *sample)
	}
	from, err := sessions.ParseTime(*fromFlag)
	if err != nil {
		return usageErrorf("--from: %v", err)
	}
	to, err := sessions.ParseTime(*toFlag)
	if err != nil {
		return usageErrorf("--to: %v", err)
	}
	if to.Before(from) {
		return usageErrorf("--to %s is before --from %s", *toFlag, *fromFlag)
	}
	now := time.Now()
	if *nowFlag != "" {
		if now, err = sessions.ParseTime(*nowFlag); err != nil {
			return usageErrorf("--now: %v", err)
		}
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		return exitCode(2, err)
	}
	if err := checkOutDir(dir, *force); err != nil {
		return err
	}
	var keptNote []byte
	if *kept != "" {
		if keptNote, err = os.ReadFile(*kept); err != nil {
			return exitCode(2, fmt.Errorf("kept checkpoint: %w", err))
		}
	}
	job := &reportJob{from: from, to: to, now: now, targets: targets, identities: identities, kept: keptNote, keptFile: absOr(*kept),
		sample: *sample, seed: *seed, ws: ws, wf: wf}
	sc, err := e.scope(*db, *keyFile, *clusterFlag)
	if err != nil {
		return err
	}
	attrs := recorder.Attrs{"period.from": from.UTC().Format(time.RFC3339), "period.to": to.UTC().Format(time.RFC3339), "format": "html+json"}
	if len(targets) > 0 {
		attrs["targets"] = strings.Join(targets, ",")
	}
	if len(identities) > 0 {
		attrs["identities"] = strings.Join(identities, ",")
	}
	if *sample > 0 {
		attrs["sample"], attrs["seed"] = strconv.Itoa(*sample), strconv.FormatInt(*seed, 10)
	}
	if sc.clustered() {
		return evidenceCluster(ctx, e, sc, job, dir, attrs, *force, *unrecorded)
	}
	v, key, path := sc.logs[0].v, sc.logs[0].key, sc.path
	st, err := openReadOnly(ctx, path, v.Name())
	if err != nil {
		return exitCode(2, err)
	}
	defer st.Close()
	// Asked before the read is recorded: see runVerify.
	live := writerLive(ctx, e, st, path)

	if err := recordRead(ctx, e, path, "evidence", attrs, *unrecorded); err != nil {
		return err
	}

	rep, err := job.build(ctx, st, v, key, path, dir, live, []string{"--key", key.File}, false)
	var scopeErr *evidence.ScopeError
	if errors.As(err, &scopeErr) {
		hint := fmt.Sprintf(`the journal names %d %s(s); "bastion sessions list" shows them`, scopeErr.Known, scopeErr.Kind)
		return exitCode(1, withHint(err, hint))
	}
	if errors.Is(err, recorder.ErrVerify) {
		return exitCode(2, err)
	}
	if err != nil {
		return exitCode(2, fmt.Errorf("evidence from %s: %w", path, err))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return exitCode(2, fmt.Errorf("evidence: %w", err))
	}
	if *force {
		if err := clearOldReport(dir); err != nil {
			return err
		}
	}
	if err := job.write(ctx, st, v, dir, rep); err != nil {
		return err
	}
	sig, leaf, err := recordReport(ctx, e, path, dir, attrs, *unrecorded)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "evidence for %s to %s written to %s\n", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), dir)
	fmt.Fprintf(e.stdout, "  anchor: %s (%s)\n", rep.Anchor.Level, rep.Anchor.Basis)
	if sig != nil {
		fmt.Fprintf(e.stdout, "  recorded at leaf %d; %s is the journal key's note over the report's digests\n", leaf, evidence.SignatureFile)
	}
	for _, b := range rep.Banners {
		fmt.Fprintf(e.stdout, "  WARNING: %s\n", termtext.Line(b.What))
	}
	fmt.Fprintf(e.stdout, "  %d identities, %d grants, %d sessions, %d refusals, %d exception(s), %d open item(s)\n",
		rep.Summary.Identities, rep.Summary.Grants, rep.Summary.Sessions, rep.Summary.Refusals, len(rep.Summary.Exceptions), len(rep.Summary.OpenItems))
	if !rep.Verification.Intact {
		fmt.Fprintf(e.stdout, "journal: does NOT verify (%d problem(s)); the report says so first\n", len(rep.Verification.Problems))
		return exitCode(1, nil)
	}
	fmt.Fprintf(e.stdout, "journal: intact, checkpoint of size %d covers the period\n", rep.Checkpoint.Size)
	return nil
}

// recordReport records the report written into dir, read from the
// journal at path: its digests in an evidence.generated leaf (with the
// period, filters, sample and logs of attrs, the read's), and the note the
// journal's writer signs over them beside it (evidence.sig). With
// unrecorded nothing is recorded, and sig is nil.
func recordReport(ctx context.Context, e *env, path, dir string, attrs recorder.Attrs, unrecorded bool) (sig []byte, leaf int64, err error) {
	gen := recorder.Attrs{"out": dir}
	for _, k := range []string{"period.from", "period.to", "targets", "identities", "sample", "seed", "logs"} {
		if v, ok := attrs[k]; ok {
			gen[k] = v
		}
	}
	for k, name := range map[string]string{"sha256.html": evidence.HTMLFile, "sha256.json": evidence.JSONFile} {
		if gen[k], err = evidence.DigestFile(dir, name); err != nil {
			return nil, 0, exitCode(2, fmt.Errorf("evidence: %w", err))
		}
	}
	sig, leaf, err = recordEvidenceGenerated(ctx, e, path, gen, unrecorded)
	if err != nil {
		return nil, 0, err
	}
	if sig != nil {
		if err := writeBytesAtomic(filepath.Join(dir, evidence.SignatureFile), sig); err != nil {
			return nil, 0, exitCode(2, fmt.Errorf("evidence: write %s: %w", evidence.SignatureFile, err))
		}
	}
	return sig, leaf, nil
}

// checkOutDir refuses an existing --out directory that holds anything,
// unless force: a report must not be overwritten by mistake.
func checkOutDir(dir string, force bool) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return exitCode(2, fmt.Errorf("--out %s: %w", dir, err))
	case len(entries) == 0:
		return nil
	case !force:
		return exitCode(2, withHint(fmt.Errorf("--out %s exists and is not empty", dir),
			"give a new directory, or --force to replace the report in it"))
	}
	return nil
}

// clearOldReport removes, from a directory --force lets the report be
// written into, the files of the report it replaces that the new one may
// not write: its signature (an unrecorded report has none) and bundles
// (the new one may detail other sessions). It runs once the new report is
// built, so that a report that cannot be made leaves the old one whole.
func clearOldReport(dir string) error {
	old, _ := filepath.Glob(filepath.Join(dir, "bundles", "*.bundle"))
	for _, f := range append(old, filepath.Join(dir, evidence.SignatureFile)) {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return exitCode(2, fmt.Errorf("--out %s: %w", dir, err))
		}
	}
	return nil
}

func absOr(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// A reportJob is what the reports of one "bastion evidence" share: the
// period, the filters, the anchor, the sample.
type reportJob struct {
	from, to, now       time.Time
	targets, identities []string
	kept                []byte
	keptFile            string
	sample              int
	seed                int64
	ws                  recorder.Witnesses
	wf                  *witnessFlags
	// member is the cluster member ID of the log reported on, zero
	// outside a cluster (evidence.Options Member).
	member uint16
}

// build builds the report of the log v verifies in st, the journal at
// path, to be written into dir; keyArgs name its key in the verification
// command the report prints ("--key FILE", or "--cluster FILE").
// scopeElsewhere is [evidence.Options] ScopeElsewhere.
func (j *reportJob) build(ctx context.Context, st storage.Store, v note.Verifier, key keyInfo, path, dir string, live bool, keyArgs []string, scopeElsewhere bool) (*evidence.Report, error) {
	cpFile := filepath.Join(dir, "checkpoint.txt")
	verifyArgs := append([]string{"bastion", "verify", "--db", path}, keyArgs...)
	verifyArgs = append(verifyArgs, "--checkpoint", cpFile)
	for _, w := range j.wf.keys {
		verifyArgs = append(verifyArgs, "--witness", w)
	}
	if j.wf.threshold.set {
		verifyArgs = append(verifyArgs, "--witness-threshold", strconv.Itoa(j.wf.threshold.n))
	}
	return evidence.Build(ctx, st, evidence.Options{
		From: j.from, To: j.to, Targets: j.targets, Identities: j.identities, Verifier: v, Now: j.now,
		Kept: j.kept, KeptFile: j.keptFile, Sample: j.sample, Seed: j.seed, JournalBytes: storage.SQLiteBytes(path),
		Witnesses: j.ws, Live: live, ScopeElsewhere: scopeElsewhere, Member: j.member,
		Journal:       evidence.JournalInfo{Path: journalName(path), Key: key.Key, KeyFile: key.File, KeyFromHome: key.Default},
		VerifyCommand: termtext.ShellJoin(verifyArgs),
		VerifyOutput: func(r *recorder.Report) string {
			var b bytes.Buffer
			r.WriteText(&b, journalName(path), key)
			return b.String()
		},
	})
}

// write writes the files of rep, the report of the log v verifies in st,
// into dir: bundles, JSON, HTML and checkpoint.
func (j *reportJob) write(ctx context.Context, st storage.Store, v note.Verifier, dir string, rep *evidence.Report) error {
	err := evidence.WriteFiles(ctx, st, v, j.ws, rep, func(name string, write func(io.Writer) error) error {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		return writeFileAtomic(path, write)
	})
	if err != nil {
		return exitCode(2, fmt.Errorf("evidence: %w", err))
	}
	return nil
}

// A reportFile is one file of a report and what writes it.
type reportFile struct {
	name  string
	write func(io.Writer) error
}

// writeReportFiles writes the files into dir, each atomically.
func writeReportFiles(dir string, files []reportFile) error {
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.write); err != nil {
			return exitCode(2, fmt.Errorf("evidence: write %s: %w", f.name, err))
		}
	}
	return nil
}

// jsonFile writes v as indented JSON.
func jsonFile(v any) func(io.Writer) error {
	return func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
}
