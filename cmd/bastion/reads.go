package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/bastionhq/bastion/bastion"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/termtext"
	"github.com/bastionhq/bastion/storage"
)

// Every read of the journal through play, export, evidence, sessions show,
// sessions search and verify is journaled before anything of it is shown
// (a journal.accessed leaf): by the running serve that holds the journal,
// through its access socket beside it, which names the reader as the
// kernel reports it; or, when no writer holds the journal, by the reader
// itself. A read that cannot be recorded is refused, unless the reader
// says --unrecorded: it then proceeds with a warning, and nothing is
// journaled.

// readFlagsUsage is the part of the usage of every reading command that
// describes the flags of recorded reads, their text starting at column
// col as the command's other flags' does.
func readFlagsUsage(col int) string {
	flag := func(name, desc string) string { return usageFlag(col, name, desc) }
	return flag("--unrecorded", "read even when the read cannot be recorded in\nthe journal: warn, and journal nothing") + "\n" +
		flag("--token-file FILE", "an OIDC token naming you, for the running\nserver to verify and record (default:\n$BASTION_TOKEN_FILE)") + "\n" +
		flag("--server URL", "a PostgreSQL journal: the serve instance\nwhose API records the read, https://HOST[:PORT]\n(default: the client profile's, if any)") + "\n" +
		flag("--ca-fingerprint SHA256:X", "pin that API's TLS certificate")
}

// usageFlag is a flag's usage, its description (lines split by "\n")
// starting at column col, or on the next line when the name is too long.
func usageFlag(col int, name, desc string) string {
	more := "\n" + strings.Repeat(" ", col)
	pad := col - 4 - len(name)
	if pad < 2 {
		return "    " + name + more + strings.ReplaceAll(desc, "\n", more)
	}
	return "    " + name + strings.Repeat(" ", pad) + strings.ReplaceAll(desc, "\n", more)
}

// readsText is the part of the usage of every reading command that says
// how its read is recorded; %s names the read ("play", "export"…).
const readsText = `Every %[1]s is recorded in the journal first, as a journal.accessed event:
by the running "bastion serve" that holds the journal, through its access
socket (the journal's path and ".sock"), which records who you are as the
kernel reports it (uid, account, pid) and, with --token-file, the identity
your token proves; or, when no process holds the journal, by this command
itself, with the home's journal key. A PostgreSQL journal has no access
socket: with --server URL (or a client profile from "bastion login"), the
serve instance there records the %[1]s in its own log, through its HTTPS
API, as the identity your token proves, and only for the auditors and
operators of its policy; without one, this command records it itself, as
for a file. A %[1]s that cannot be recorded (another process holds the
journal without an access socket, the server refuses or cannot be
reached, the journal cannot be written) is refused, exit 1; --unrecorded
goes ahead, says so on stderr, and journals nothing.`

// readsParagraph is readsText for the read what, filled to 76 columns.
func readsParagraph(what string) string { return fill(fmt.Sprintf(readsText, what), 76) }

// fill joins the words of text into lines of at most width columns.
func fill(text string, width int) string {
	var b strings.Builder
	n := 0
	for _, w := range strings.Fields(text) {
		switch {
		case n == 0:
		case n+1+len(w) > width:
			b.WriteByte('\n')
			n = 0
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

// registerReadFlags adds --unrecorded and --token-file to fs, and returns
// where --unrecorded goes.
func (e *env) registerReadFlags(fs *flagSet) *bool {
	fs.StringVar(&e.tokenFile, "token-file", e.tokenFile, "token `FILE`")
	fs.StringVar(&e.readServer, "server", e.readServer, "API `URL`")
	fs.StringVar(&e.readFingerprint, "ca-fingerprint", e.readFingerprint, "TLS certificate `SHA256:...`")
	return fs.Bool("unrecorded", false, "read without recording the read")
}

// readerToken is the reader's or operator's OIDC token: from --token-file,
// else from the file $BASTION_TOKEN_FILE names; "" for none.
func (e *env) readerToken() (string, error) {
	path := e.tokenFile
	if path == "" {
		path = e.getenv("BASTION_TOKEN_FILE")
	}
	if path == "" {
		return "", nil
	}
	return loginReadTokenFile(path)
}

// readNames is how a read is named in messages, by action.
var readNames = map[string]string{
	"play": "play", "export": "export", "evidence": "report", "show": "sessions show",
	"search": "search", "verify": "verify", "list": "listing",
}

// recordRead journals a read of the journal at path (a journal.accessed
// leaf: action, and attrs saying what is read) before the command shows
// anything of it. It asks the server whose access socket is beside the
// journal; when none answers, the reader records it itself, holding the
// journal for a moment (via reader). An error refuses the read (exit 1)
// with a hint naming --unrecorded; with unrecorded, nothing is journaled
// and a warning says so.
//
// A verify is the exception where no writer holds the journal: one that
// no writer may extend as it is (damaged, or not the home key's) cannot
// record its reads, and verify is what names what is wrong with it; and
// an auditor verifies a copy away from the bastion with only its public
// key, no journal key to record with, or on read-only media. Verify shows
// nothing of what the journal holds, so it proceeds with a warning.
func recordRead(ctx context.Context, e *env, path, action string, attrs recorder.Attrs, unrecorded bool) error {
	what := readNames[action]
	if unrecorded {
		fmt.Fprintf(e.stderr, "bastion: warning: this %s is not recorded in the journal (--unrecorded)\n", what)
		return nil
	}
	_, err := recordOnce(ctx, e, path, recorder.EventJournalAccessed, action, attrs)
	switch {
	case err == nil:
		return nil
	case action == "verify" && unextendable(err):
		fmt.Fprintf(e.stderr, "bastion: warning: this verify is not recorded in the journal: no writer may extend it as it is (%s)\n", termtext.Line(err.Error()))
		return nil
	case action == "verify" && (errors.Is(err, certauth.ErrNoJournalKey) || errors.Is(err, fs.ErrPermission)):
		fmt.Fprintf(e.stderr, "bastion: note: this verify is not recorded in the journal: no writer holds it, and it cannot be written here (%s)\n", termtext.Line(err.Error()))
		return nil
	}
	return exitCode(1, withHint(fmt.Errorf("this %s cannot be recorded in the journal, so it is refused: %w", what, err),
		readHint(err, path, "--unrecorded goes ahead all the same, with a warning, and journals nothing")...))
}

// recordEvidenceGenerated journals an examiner's report whose files are
// written (an evidence.generated leaf: attrs are the period, the filters,
// the sample, out and the files' sha256.html and sha256.json) as
// recordRead journals a read, and returns the signed note over the leaf
// (recorder.EvidenceNote, signed with the journal's key) and its index.
// With unrecorded, nothing is journaled or signed (sig nil, leaf -1) and
// a warning says so.
func recordEvidenceGenerated(ctx context.Context, e *env, path string, attrs recorder.Attrs, unrecorded bool) (sig []byte, leaf int64, err error) {
	if unrecorded {
		fmt.Fprintf(e.stderr, "bastion: warning: this report is not recorded in the journal and has no signed note (--unrecorded)\n")
		return nil, -1, nil
	}
	res, err := recordOnce(ctx, e, path, recorder.EventEvidenceGenerated, "", attrs)
	if err != nil {
		return nil, -1, exitCode(1, withHint(fmt.Errorf("the report is written, but it cannot be recorded in the journal: %w", err),
			readHint(err, path, "--unrecorded writes a report without recording it, with a warning")...))
	}
	return res.note, res.leaf, nil
}

// recorded is where a read or a report was journaled.
type recorded struct {
	leaf int64
	note []byte // the signed evidence note, for evidence.generated
}

// recordOnce journals event (with action, for journal.accessed) through
// the running server's access socket, or, when none answers, itself.
func recordOnce(ctx context.Context, e *env, path, event, action string, attrs recorder.Attrs) (*recorded, error) {
	token, err := e.readerToken()
	if err != nil {
		return nil, err
	}
	says := ""
	if u, err := user.Current(); err == nil {
		says = u.Username
	}
	// A journal in a database has no access socket beside it: a serve
	// instance records the read through its API, when one is named.
	if e.readServer != "" && !isDatabase(path) {
		return nil, usageErrorf("--server records the reads of a PostgreSQL journal; a SQLite journal's reads are recorded through serve's access socket beside it")
	}
	if e.journal == nil && isDatabase(path) {
		res, through, err := recordThroughAPI(ctx, e, event, action, attrs, says)
		if through {
			return res, err
		}
	}
	if e.journal == nil && !isDatabase(path) {
		sock := path + bastion.AccessSocketSuffix
		var res *recorded
		switch event {
		case recorder.EventEvidenceGenerated:
			var r *bastion.EvidenceResponse
			if r, err = bastion.RecordEvidence(ctx, sock, bastion.EvidenceRequest{Attrs: attrs, Token: token, User: says}); err == nil {
				res = &recorded{leaf: r.Leaf, note: []byte(r.Note)}
			}
		default:
			var r *bastion.AccessResponse
			if r, err = bastion.RecordAccess(ctx, sock, bastion.AccessRequest{Action: action, Attrs: attrs, Token: token, User: says}); err == nil {
				res = &recorded{leaf: r.Leaf}
			}
		}
		if !errors.Is(err, bastion.ErrNoAccessSocket) {
			return res, err
		}
	}
	// No server answers for the journal: this process records it, as
	// the journal's writer, if it can be.
	if token != "" {
		fmt.Fprintf(e.stderr, "bastion: warning: no server runs for %s to verify your token: the journal records your OS account only\n", path)
	}
	a := recorder.Attrs{}
	for k, v := range attrs {
		a[k] = v
	}
	if action != "" {
		a["action"] = action
	}
	maps.Copy(a, selfAttrs(bastion.ViaReader))
	a["identity.verified"] = bastion.VerifiedNone
	return appendSelf(ctx, e, path, event, a)
}

// selfAttrs name this process as a leaf it writes itself names who acted:
// via, and its uid, pid, account and host.
func selfAttrs(via string) recorder.Attrs {
	a := recorder.Attrs{"via": via, "uid": strconv.Itoa(os.Getuid()), "pid": strconv.Itoa(os.Getpid())}
	if u, err := user.Current(); err == nil {
		a["user"] = u.Username
	}
	if h, err := os.Hostname(); err == nil {
		a["host"] = h
	}
	return a
}

// appendSelf appends event to the journal at path, opened for writing
// with the home's key (or through the journal this process already
// writes), and, for evidence.generated, signs its note.
func appendSelf(ctx context.Context, e *env, path, event string, attrs recorder.Attrs) (*recorded, error) {
	home, err := e.home()
	if err != nil {
		return nil, err
	}
	// The key first: without it nothing is recorded (and a report's
	// leaf would have no note).
	key, err := certauth.LoadJournalKey(home)
	if err != nil {
		return nil, err
	}
	j := e.journal
	closeJournal := func() error { return nil }
	if j == nil {
		if holder := storage.WriterHolder(path); holder != "" {
			return nil, &heldError{holder: holder}
		}
		if j, _, closeJournal, err = openJournalAt(ctx, home, path); err != nil {
			var le *storage.LockedError
			if errors.As(err, &le) {
				return nil, &heldError{holder: le.Holder}
			}
			return nil, err
		}
	}
	idx, err := j.AppendEvent(ctx, event, attrs)
	if err = errors.Join(err, closeJournal()); err != nil {
		return nil, err
	}
	res := &recorded{leaf: idx}
	if event == recorder.EventEvidenceGenerated {
		if res.note, err = recorder.SignEvidenceLeaf(key, idx, attrs); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// heldError says that a process that does not record reads for others
// holds the journal: a writer without an access socket ("bastion record").
type heldError struct{ holder string }

func (e *heldError) Error() string {
	if e.holder == "" {
		return "another process holds the journal for writing, and no server answers on its access socket"
	}
	return "the journal is held for writing by " + e.holder + ", and no server answers on its access socket"
}

// unextendable reports whether err says that no writer may extend the
// journal as it is: it does not verify, or is not the home key's.
func unextendable(err error) bool {
	return errors.Is(err, recorder.ErrJournalDamaged) || errors.Is(err, storage.ErrCorrupt) ||
		errors.Is(err, storage.ErrOtherLog) || errors.Is(err, storage.ErrNotJournal) || errors.Is(err, storage.ErrSchemaTooNew)
}

// readHint is what helps with a read that could not be recorded, ending
// with last.
func readHint(err error, path, last string) []string {
	var hints []string
	var he *heldError
	var ae *apiReadError
	switch {
	case errors.As(err, &ae):
		hints = append(hints, apiReadHint(err))
	case errors.As(err, &he) && isDatabase(path):
		hints = append(hints, "a serve instance holds this log: pass --server URL (and --ca-fingerprint, --token-file) to have it record the read through its API")
	case errors.As(err, &he):
		hints = append(hints, "reads are recorded by the writer that holds the journal: wait until it is done, or read through a running \"bastion serve\"")
	case errors.Is(err, certauth.ErrNoJournalKey):
		hints = append(hints, "with no server running, only the journal's owner (with its home's journal key, --home DIR) can record a read")
	case unextendable(err):
		hints = append(hints, "run \"bastion verify --db "+path+"\" to find out why no writer may extend the journal")
	case errors.Is(err, storage.ErrPermissions):
		hints = append(hints, "a journal \"bastion serve\" shares with its access group is written only by serve, configured so: start it: reads are then recorded through it")
	}
	return append(hints, last)
}
