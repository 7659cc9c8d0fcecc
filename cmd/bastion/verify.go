package main

import (
	"archive/zip"
	"cmp"
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

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"

	"github.com/bastionhq/bastion/bastion"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/evidence"
	"github.com/bastionhq/bastion/recorder/termtext"
	"github.com/bastionhq/bastion/recorder/witness"
	"github.com/bastionhq/bastion/storage"
)

func init() {
	register(&command{
		name:    "verify",
		summary: "verify the journal's hash chains, Merkle tree and signed checkpoints",
		usage:   verifyUsage,
		run:     runVerify,
	})
}

var verifyUsage = `Usage:
    bastion verify [--db FILE] [--key FILE | --cluster FILE] [--session ID]
                   [--checkpoint FILE]... [--json] [--witness VKEY]...
                   [--witness-threshold N] [--unrecorded] [--token-file FILE]
                   [--server URL [--ca-fingerprint SHA256:X]]
    bastion verify --bundle FILE --key FILE [--witness VKEY]... [--witness-threshold N] [--json]
    bastion verify --report DIR|ZIP [--key FILE] [--db FILE]

Recomputes the journal from its records and checks it against its signed
checkpoints, trusting nothing in the file: every session's hash chain,
every leaf of the log, the Merkle tree, and every checkpoint's signature
with the journal's public key. It reports the first bad record and where
it is, leaves that no valid checkpoint covers, and sessions that never
ended (the recorder crashed, was killed, or is still running: not
tampering by itself). It reads one consistent snapshot, so it can run while
bastion writes the journal.

With --checkpoint, a checkpoint you kept earlier (from "bastion checkpoint"),
it also proves with a consistency proof that the journal still extends it:
this catches a truncated journal and an older copy put back in its place.

With --witness, the cosignature key of a witness you trust (repeat for
several), it also checks the witnesses' cosignatures on the journal's
published checkpoints: it prints what each witness cosigned and the
witnessed size, the largest checkpoint at least N of them cosigned
(--witness-threshold N; default: all of them), and the leaves after it.
A cosignature line by one of those keys that does not verify is a
problem, and so are leaves no checkpoint with N cosignatures covers,
unless a running server holds the journal (it pushes its checkpoints to
the witnesses about once a second: then they are only reported), or
they are reads recorded by their readers since the server stopped.
Cosignatures come with a journal restored from a backup: to catch a
rollback, pass the witness's latest checkpoint ("bastion witness
latest") with --checkpoint. See docs/journal-format.md, section 10.

With --bundle, it checks a session bundle ("bastion export --format bundle")
with no journal: each frame's hash and the session's chain, each leaf's
inclusion proof against the bundle's checkpoint, and the checkpoint's
signature with the key given with --key, which is required: the key is
the auditor's, never one the bundle names. With --witness, it also checks
the cosignatures the bundle's checkpoint carries, and fails when fewer
than --witness-threshold of those witnesses cosigned it.

With --report, it checks an examiner's report ("bastion evidence", or
the zip archive of the same files the web console's evidence page hands
out): the signature of evidence.sig with the journal's key, that evidence.html
and evidence.json still have the SHA-256 it signs, and, when the journal
is at hand, that its evidence.generated record names the same digests
(the journal is read and its log verified as "bastion sessions list"
reads it), and who registered them. It proves that the files are those
registered then, by that reader; not that their content is true: the
journal's writer signs the digests a reader registers. "bastion verify"
of the journal and a new report of the same period check the content.
For a cluster's report, it also checks each member's report files
(member-ID/evidence.json, evidence.html, checkpoint.txt) against the
digests the signed evidence.json gives: one changed or missing fails.

` + clusterParagraph + `

A cluster's verify reports each member's log in turn, with its own key, and
ends with one verdict: it exits 1 when any member's log does not verify or
is missing, naming which, when the database holds a log the cluster file
does not name (none of its keys verifies it), and when two logs start one
session (naming both). Give --checkpoint once per member's log: each
applies to the log of its origin. --session verifies the log that holds
the session.

` + readsParagraph("verify") + `

Where no writer holds the journal, a verify that cannot record itself
goes ahead with a note, as verify shows nothing the journal holds: a
journal no writer may extend as it is (it does not verify, or it is
another key's: what is wrong is what verify reports), or a copy an
auditor verifies away from the bastion with only its public key (no
journal key to record with, or read-only media). Verifying a bundle or a
report is not a read of the journal, and is not recorded.

Exit status: 0 the journal is intact; 1 it does not verify under the key:
tampered, incomplete, or not this key's journal (everything wrong inside the
file is a finding, so nobody who can write the file can turn "tampered"
into "could not run"); 2 the check could not run: no journal at the path,
no readable key, an unreadable kept checkpoint. A verify that could not be
recorded exits 1 too, saying so, without a report.

Flags:
    --db FILE           the journal (default: journal.db in the home directory)
    --key FILE          the journal's public key (default: journal.pub in the
                        home directory); an auditor passes the key they were
                        given, never one read from the journal
    --session ID        check only this session's frames (the log and its
                        checkpoints are always checked whole)
    --checkpoint FILE   a checkpoint kept earlier that the journal must extend;
                        with a cluster, repeat it, one per member's log
    --witness VKEY      a witness's cosignature verifier key, or a file that
                        holds one; repeat for several
    --witness-threshold N
                        how many of the witnesses must cosign a checkpoint
                        (default: all of them)
    --bundle FILE       verify a session bundle instead of a journal
    --report DIR|ZIP    verify an examiner's report's signature and files
    --json              print the report as JSON (see docs/journal-format.md)
` + readFlagsUsage(24) + "\n" + clusterFlagUsage(24) + `

Examples:
    $ bastion verify
    $ bastion checkpoint > kept.txt; ...; bastion verify --checkpoint kept.txt
    $ bastion verify --db copy.db --key journal.pub --json --unrecorded
    $ bastion verify --bundle session.bundle --key journal.pub
    $ bastion witness latest --home /srv/witness --origin bastion.example/journal > kept.txt
    $ bastion verify --key journal.pub --checkpoint kept.txt \
          --witness w1.pub --witness w2.pub --witness-threshold 2`

func runVerify(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	db := fs.String("db", "", "journal `FILE`")
	keyFile := fs.String("key", "", "public key `FILE`")
	session := fs.String("session", "", "session `ID`")
	var kept stringsFlag
	fs.Var(&kept, "checkpoint", "kept checkpoint `FILE`; in a cluster, one per member's log")
	asJSON := fs.Bool("json", false, "JSON output")
	bundle := fs.String("bundle", "", "session bundle `FILE`")
	report := fs.String("report", "", "report `DIR`")
	wf := registerWitnessFlags(fs)
	unrecorded := e.registerReadFlags(fs)
	clusterFlag := registerClusterFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *report != "" {
		if *bundle != "" || *session != "" || len(kept) > 0 || *asJSON || wf.given() || *clusterFlag != "" {
			return usageErrorf("--report takes only --key and --db")
		}
		return verifyReport(ctx, e, *report, *keyFile, *db)
	}
	if fs.NArg() > 0 {
		return usageErrorf("verify takes no arguments; name a session with --session ID")
	}
	ws, err := wf.witnesses()
	if err != nil {
		return err
	}
	if *bundle != "" {
		if *db != "" || *session != "" || len(kept) > 0 || *clusterFlag != "" {
			return usageErrorf("--bundle takes no --db, --session, --checkpoint or --cluster: a bundle is checked on its own")
		}
		return verifyBundle(e, *bundle, *keyFile, *asJSON, ws)
	}
	opts := recorder.VerifyOptions{Witnesses: ws}
	sc, err := e.scope(*db, *keyFile, *clusterFlag)
	if err != nil {
		return err
	}
	key := sc.logs[0].key
	opts.Verifier = sc.logs[0].v
	if *session != "" {
		id, err := uuid.Parse(*session)
		if err != nil {
			return exitCode(2, usageErrorf("--session %q is not a session ID", *session))
		}
		sid := recorder.SessionID(id)
		opts.Session = &sid
	}
	if sc.clustered() {
		keptByLog, err := readKeptCheckpoints(sc, kept)
		if err != nil {
			return err
		}
		return verifyCluster(ctx, e, sc, opts, keptByLog, *asJSON, *unrecorded)
	}
	switch len(kept) {
	case 0:
	case 1:
		if opts.Kept, err = os.ReadFile(kept[0]); err != nil {
			return exitCode(2, fmt.Errorf("kept checkpoint: %w", err))
		}
	default:
		return exitCode(2, usageErrorf("--checkpoint is given %d times: a journal of one log takes one kept checkpoint (several are for a cluster's logs, one per member)", len(kept)))
	}
	path := sc.path
	st, err := openReadOnly(ctx, path, opts.Verifier.Name())
	if errors.Is(err, storage.ErrNotJournal) || errors.Is(err, storage.ErrSchemaTooNew) {
		// The file is there but is not a journal this bastion can read:
		// a finding about the file, not a failure to run.
		r := &recorder.Report{Origin: opts.Verifier.Name(), Unterminated: []recorder.SessionSummary{}, Abandoned: []recorder.SessionSummary{},
			Problems: []recorder.Problem{{Leaf: -1, Where: "journal file", What: strings.TrimPrefix(err.Error(), "open journal "+path+": ")}}}
		return printVerify(e, path, key, *asJSON, r)
	}
	if err != nil {
		return exitCode(2, err)
	}
	defer st.Close()
	// A running writer pushes its checkpoints to the witnesses: what is
	// not cosigned yet is lag. Asked before the read is recorded, which
	// a reader of a journal no writer holds does as a writer itself.
	opts.Live = writerLive(ctx, e, st, path)
	attrs := recorder.Attrs{}
	if opts.Session != nil {
		attrs["session"] = uuid.UUID(*opts.Session).String()
	}
	if err := recordRead(ctx, e, path, "verify", attrs, *unrecorded); err != nil {
		return err
	}
	if stderr, ok := e.stderr.(*os.File); ok && isTerminal(stderr) && !*asJSON {
		opts.Progress = func(done, total int64) {
			if total > 0 {
				fmt.Fprintf(stderr, "\rverifying: %3d%% (%s of %s)\x1b[K", done*100/total, recorder.ByteCount(done), recorder.ByteCount(total))
			}
		}
		defer fmt.Fprint(stderr, "\r\x1b[K")
	}
	r, err := recorder.Verify(ctx, st, opts)
	if err != nil {
		if errors.Is(err, recorder.ErrVerify) {
			return exitCode(2, err)
		}
		return exitCode(2, fmt.Errorf("verify %s: %w", path, err))
	}
	return printVerify(e, path, key, *asJSON, r)
}

// writerLive says whether a running writer holds the log open as st
// (writerHeld), or this process is that writer.
func writerLive(ctx context.Context, e *env, st storage.Store, path string) bool {
	return e.journal != nil || writerHeld(ctx, st, path)
}

// loadVerifier reads the journal's public key from file, or from the home
// directory when file is "", and says which key it read.
func loadVerifier(e *env, file string) (note.Verifier, keyInfo, error) {
	key := keyInfo{File: file, Default: file == ""}
	if key.Default {
		home, err := e.home()
		if err != nil {
			return nil, key, err
		}
		key.File = filepath.Join(home, certauth.JournalPubKeyFile)
	}
	vkey, err := certauth.LoadVerifierKey(key.File)
	if err != nil {
		return nil, key, keyError(key.File, err)
	}
	v, err := recorder.ParseVerifierKey(vkey)
	if err != nil {
		return nil, key, keyError(key.File, err)
	}
	key.Key = vkey
	return v, key, nil
}

func keyError(file string, err error) error {
	return withHint(fmt.Errorf("journal public key %s: %w", file, err),
		"pass the journal's public key with --key FILE (journal.pub, made by \"bastion ca init\")")
}

// keyInfo says which public key verify used (recorder.KeyInfo).
type keyInfo = recorder.KeyInfo

// printVerify prints the report and returns the exit status it implies.
func printVerify(e *env, path string, key keyInfo, asJSON bool, r *recorder.Report) error {
	if asJSON {
		out := struct {
			Journal string  `json:"journal"`
			Intact  bool    `json:"intact"`
			Key     keyInfo `json:"key"`
			*recorder.Report
		}{path, r.Intact(), key, r}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		r.WriteText(e.stdout, path, key)
	}
	if !r.Intact() {
		return exitCode(1, nil)
	}
	return nil
}

// witnessFlags are --witness and --witness-threshold, of verify and
// evidence.
type witnessFlags struct {
	keys      stringsFlag
	threshold optionalInt
}

// optionalInt is an integer flag that knows whether it was given.
type optionalInt struct {
	n   int
	set bool
}

func (o *optionalInt) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.Itoa(o.n)
}

func (o *optionalInt) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("%q is not a number", v)
	}
	o.n, o.set = n, true
	return nil
}

func registerWitnessFlags(fs *flagSet) *witnessFlags {
	w := &witnessFlags{}
	fs.Var(&w.keys, "witness", "witness cosignature key `VKEY`, or a file holding one")
	fs.Var(&w.threshold, "witness-threshold", "witnesses `N` that must cosign")
	return w
}

func (w *witnessFlags) given() bool { return len(w.keys) > 0 || w.threshold.set }

// witnesses parses the keys and checks the threshold: a mistake is a
// usage error (exit 2), as the check could not run.
func (w *witnessFlags) witnesses() (recorder.Witnesses, error) {
	var ws recorder.Witnesses
	for _, arg := range w.keys {
		k, err := loadWitnessKey(arg)
		if err != nil {
			return ws, exitCode(2, withHint(err, "a witness's key is one line, NAME+HASH+KEY, of type Ed25519 or ML-DSA-44 cosignature (\"bastion witness serve\" prints its own, and keeps it in witness.pub)"))
		}
		ws.Keys = append(ws.Keys, k)
	}
	if w.threshold.set {
		if n := len(ws.Keys); w.threshold.n < 1 || w.threshold.n > n {
			if n == 0 {
				return ws, usageErrorf("--witness-threshold needs --witness keys")
			}
			return ws, usageErrorf("--witness-threshold %d: give a number from 1 to %d, the witnesses given", w.threshold.n, n)
		}
		ws.Threshold = w.threshold.n
	}
	if err := ws.Check(); err != nil {
		return ws, usageErrorf("--witness: %v", err)
	}
	return ws, nil
}

// loadWitnessKey reads a --witness value: a witness's verifier key, or
// the name of a file holding one (and white space around it).
func loadWitnessKey(arg string) (*witness.Key, error) {
	k, keyErr := witness.ParseKey(arg)
	if keyErr == nil {
		return k, nil
	}
	f, err := os.Open(arg)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("--witness %q is neither a witness key (%v) nor a file", arg, keyErr)
	}
	if err != nil {
		return nil, fmt.Errorf("--witness: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("--witness %s: %w", arg, err)
	}
	if k, err = witness.ParseKey(string(data)); err != nil {
		return nil, fmt.Errorf("--witness %s: %w", arg, err)
	}
	return k, nil
}

// verifyBundle checks a session bundle with the auditor's key, and the
// cosignatures of its checkpoint with the witnesses' keys, if given.
func verifyBundle(e *env, file, keyFile string, asJSON bool, ws recorder.Witnesses) error {
	if keyFile == "" {
		hints := []string{"pass the journal's public key you were given: a bundle is never checked with a key it names or one found on this machine by default"}
		where := "the key is journal.pub in the home of the bastion that recorded the session (\"bastion ca show\" there prints it)"
		if home, err := e.home(); err == nil {
			if pub := filepath.Join(home, certauth.JournalPubKeyFile); fileExists(pub) {
				where += "; on this machine, " + pub + " is this home's"
			}
		}
		return exitCode(2, withHint(usageErrorf("--bundle needs --key FILE"), append(hints, where)...))
	}
	v, key, err := loadVerifier(e, keyFile)
	if err != nil {
		return exitCode(2, err)
	}
	f, err := os.Open(file)
	if err != nil {
		return exitCode(2, fmt.Errorf("bundle: %w", err))
	}
	data, err := recorder.ReadBundle(f)
	f.Close()
	if err != nil && !errors.Is(err, recorder.ErrBundle) {
		return exitCode(2, fmt.Errorf("bundle %s: %w", file, err))
	}
	var rep *recorder.BundleReport
	if err == nil {
		rep, err = recorder.VerifyBundleWitnessed(data, v, ws)
	}
	if asJSON {
		out := struct {
			Bundle  string                 `json:"bundle"`
			Intact  bool                   `json:"intact"`
			Key     keyInfo                `json:"key"`
			Problem string                 `json:"problem,omitempty"`
			Report  *recorder.BundleReport `json:"report,omitempty"`
		}{Bundle: file, Intact: err == nil, Key: key, Report: rep}
		if err != nil {
			out.Problem = err.Error()
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(out); jerr != nil {
			return jerr
		}
		if err != nil {
			return exitCode(1, nil)
		}
		return nil
	}
	if rep == nil {
		fmt.Fprintf(e.stdout, "bundle %s\nresult: FAILED: %s\n", file, termtext.Line(err.Error()))
		return exitCode(1, nil)
	}
	fmt.Fprintf(e.stdout, "bundle %s\n", file)
	fmt.Fprintf(e.stdout, "  session:     %s\n", termtext.Line(rep.Session))
	fmt.Fprintf(e.stdout, "  log:         %s\n", termtext.Line(rep.Origin))
	fmt.Fprintf(e.stdout, "  key:         %s (%s)\n", key.Key, key.File)
	fmt.Fprintf(e.stdout, "  checkpoint:  tree size %d, root %s, signature valid\n", rep.TreeSize, rep.Root)
	fmt.Fprintf(e.stdout, "  leaves:      %d, each proven included in the checkpoint\n", rep.Leaves)
	fmt.Fprintf(e.stdout, "  frames:      %d, %s of payload, chain intact\n", rep.Frames, recorder.ByteCount(rep.PayloadBytes))
	if rep.Ended {
		fmt.Fprintf(e.stdout, "  ended:       %s\n", termtext.Line(rep.EndReason))
	} else {
		fmt.Fprintf(e.stdout, "  ended:       no: the session was still being recorded (or its recorder stopped) when the bundle was made; it proves the frames so far\n")
	}
	if c := rep.Witnesses; c != nil {
		fmt.Fprintf(e.stdout, "  witnesses:   %d of the %d required cosigned the checkpoint: %s\n", len(c.Valid), c.Threshold, recorder.Cosigners(c.Valid))
		if len(c.Missing) > 0 {
			fmt.Fprintf(e.stdout, "               no valid cosignature by %s\n", termtext.Line(strings.Join(c.Missing, ", ")))
		}
	}
	if err != nil {
		fmt.Fprintf(e.stdout, "result: FAILED: %s\n", termtext.Line(err.Error()))
		return exitCode(1, nil)
	}
	fmt.Fprintln(e.stdout, "result: intact")
	return nil
}

// verifyReport checks a report directory's signed note, its files'
// digests, and, when the journal is at hand, its evidence.generated leaf.
func verifyReport(ctx context.Context, e *env, dir, keyFile, db string) error {
	v, key, err := loadVerifier(e, keyFile)
	if err != nil {
		return exitCode(2, err)
	}
	fsys, closeReport, err := openReport(dir)
	if err != nil {
		return exitCode(2, fmt.Errorf("report %s: %w", dir, err))
	}
	defer closeReport()
	check, err := evidence.CheckSignature(fsys, v)
	var sigErr *evidence.SignatureError
	switch {
	case errors.As(err, &sigErr):
		fmt.Fprintf(e.stdout, "report %s\n  key:        %s (%s)\n", dir, key.Key, key.File)
		fmt.Fprintf(e.stdout, "result: FAILED: %s\n", termtext.Line(err.Error()))
		return exitCode(1, nil)
	case errors.Is(err, fs.ErrNotExist):
		return exitCode(2, withHint(fmt.Errorf("report %s: %w", dir, err), "a report made with --unrecorded has no signature"))
	case err != nil:
		return exitCode(2, fmt.Errorf("report %s: %w", dir, err))
	}
	sig := check.Note
	fmt.Fprintf(e.stdout, "report %s\n  key:        %s (%s)\n", dir, key.Key, key.File)
	fmt.Fprintf(e.stdout, "  signature:  valid, journal %s, leaf %d\n", termtext.Line(sig.Origin), sig.Leaf)
	bad := 0
	for _, f := range check.Files {
		if f.Intact() {
			fmt.Fprintf(e.stdout, "  %-14s sha256 %s, as signed\n", f.Name+":", f.SHA256)
			continue
		}
		bad++
		fmt.Fprintf(e.stdout, "  %-14s sha256 %s, NOT the signed %s: changed since it was made\n", f.Name+":", f.SHA256, f.Signed)
	}
	n, err := checkMemberReports(e.stdout, fsys)
	if err != nil {
		return exitCode(2, fmt.Errorf("report %s: %w", dir, err))
	}
	bad += n
	path, err := e.dbPath(db)
	if err == nil && !isDatabase(path) {
		if _, statErr := os.Stat(path); statErr != nil {
			err = statErr
		}
	}
	if err != nil {
		fmt.Fprintln(e.stdout, "  journal:    not at hand; its evidence.generated record was not checked (pass --db FILE)")
	} else {
		l, err := readLog(ctx, e, keyFile, db, func(name string) bool { return name == recorder.EventEvidenceGenerated })
		if err != nil {
			return err
		}
		defer l.Close()
		var leaf *recorder.Leaf
		for _, ev := range l.Events {
			if ev.Index == sig.Leaf {
				leaf = ev.Leaf
			}
		}
		switch {
		case leaf == nil:
			bad++
			fmt.Fprintf(e.stdout, "  journal:    %s has no evidence.generated record at leaf %d\n", path, sig.Leaf)
		case leaf.Attrs["sha256.html"] != sig.SHA256HTML || leaf.Attrs["sha256.json"] != sig.SHA256JSON:
			bad++
			fmt.Fprintf(e.stdout, "  journal:    leaf %d of %s records other digests\n", sig.Leaf, path)
		default:
			a := leaf.Attrs
			fmt.Fprintf(e.stdout, "  journal:    leaf %d of %s records the same digests (period %s to %s)\n", sig.Leaf, path,
				termtext.Line(a["period.from"]), termtext.Line(a["period.to"]))
			who := fmt.Sprintf("uid %s (%s), recorded by %s", a["uid"], a["user"], cmp.Or(a["via"], "reader"))
			switch a["via"] {
			case bastion.ViaAPI:
				who = "recorded by serve's API on " + a["host"] + ", for " + a["client.address"]
			case bastion.ViaConsole:
				who = "recorded by serve's console on " + a["host"] + ", for " + a["client.address"]
			}
			if id := a["identity"]; id != "" {
				who = fmt.Sprintf("%s (%s), %s", id, cmp.Or(a["identity.verified"], "none"), who)
			}
			fmt.Fprintf(e.stdout, "  made by:    %s\n", termtext.Line(who))
		}
	}
	if bad > 0 {
		fmt.Fprintf(e.stdout, "result: FAILED, %d problem(s)\n", bad)
		return exitCode(1, nil)
	}
	fmt.Fprintln(e.stdout, "result: intact: these are the files registered in the journal at that leaf, by whom it says; their content is checked")
	fmt.Fprintln(e.stdout, "        by \"bastion verify\" of the journal and a new report of the same period, not by this signature")
	return nil
}

// openReport opens a report's files: a directory "bastion evidence"
// wrote, or a zip archive of the same files (the console's download).
func openReport(path string) (fs.FS, func() error, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if fi.IsDir() {
		return os.DirFS(path), func() error { return nil }, nil
	}
	z, err := zip.OpenReader(path)
	if err != nil {
		return nil, nil, fmt.Errorf("neither a report's directory nor a zip archive of one: %w", err)
	}
	return z, z.Close, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
