package console

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/evidence"
	"github.com/bastionhq/bastion/recorder/witness"
)

// The evidence page: the journal's verification now, the witnesses'
// state, and the examiner's report of a period, built as "bastion
// evidence" builds it (recorder/evidence), journaled before it is handed
// out, and downloaded as a zip archive of the files the command writes.

// Bounds of what a report made through the console costs.
const (
	// reportTailBytes is room kept in a report's archive for what is
	// written after its leaf: the signature's note (a signed note of a
	// few hundred bytes) with its headers, and the central directory's
	// end (each file's entry, 46 bytes and its name, is counted apart).
	reportTailBytes = 4 << 10
	// MaxReportBytes bounds a report's zip archive, held in memory until
	// it is downloaded (the last one of each console session): a larger
	// one is refused, and "bastion evidence" on the bastion's host makes
	// it.
	MaxReportBytes = 64 << 20
	// MaxFilterNames bounds the targets and the identities a report is
	// limited to.
	MaxFilterNames = 64
)

// WitnessState is the witnesses' state as the server tracks it.
type WitnessState struct {
	Witnesses []witness.Status
	// Threshold is how many must cosign a checkpoint for it to count as
	// witnessed.
	Threshold int
	// Alarms are the witness alarms raised now (witness.refused,
	// witness.stale, witness.quorum).
	Alarms []string
}

// reports are the examiner's reports made through the console.
type reports struct {
	// making is held while a report is made: one at a time in all, so
	// that the console cannot be made to build many at once.
	making sync.Mutex
	// mu guards each session's report; verifying is held while the
	// journal is verified for the page.
	mu, verifying sync.Mutex
	// held are the reports held for their download, the oldest first,
	// and heldBytes the bytes of their archives (guarded by mu).
	held      []*madeReport
	heldBytes int64
}

// A madeReport is a report made, journaled and ready to download.
type madeReport struct {
	Name                   string // the download's file name
	Zip                    []byte
	Leaf                   int64
	SHA256HTML, SHA256JSON string
	From, To               string
	Anchor, Verdict        string
	Made                   string
	// Dropped says the archive was dropped from memory to make room for
	// newer reports (Bounds.HeldReports): it must be made again.
	Dropped bool
}

func (c *Console) evidenceRoutes() {
	readers := []string{RoleAuditor, RoleOperator}
	c.handle("GET "+Path+"/evidence", readers, c.evidencePage)
	c.handle("POST "+Path+"/evidence", readers, c.makeReport)
	c.handle("GET "+Path+"/evidence/report.zip", readers, c.downloadReport)
}

type evidenceData struct {
	// Journal is the journal's verification, nil on the answer to a
	// report's form (each check is a journaled read: the page checks it
	// when it is opened).
	Journal   *journalState
	Witnesses []witnessRow
	Threshold int
	Alarms    string
	// From and To fill the form: today by default.
	From, To, Targets, Identities string
	Report                        *madeReport
}

// journalState is the journal's verification now.
type journalState struct {
	Checked       bool // false when the check could not be journaled
	Origin        string
	Size          int64
	HeadTime      string
	OK            bool
	Problem       string
	IndexProblems []string
	Sessions      int
}

type witnessRow struct {
	Name, State, Detail, CosignedAt string
	Cosigned, Latest, Lag           int64
}

// evidencePage shows the journal's state and the report form.
func (c *Console) evidencePage(w http.ResponseWriter, r *http.Request, v *viewer) {
	now := c.o.Now().UTC()
	d := evidenceData{From: now.Format(time.DateOnly), To: now.AddDate(0, 0, 1).Format(time.DateOnly)}
	st := c.verifyJournal(r, v)
	d.Journal = &st
	problem := ""
	if !st.Checked {
		problem = "The journal's check could not be journaled, so it is not shown; try again later."
	}
	c.renderEvidence(w, http.StatusOK, v, &d, problem, "")
}

func (c *Console) renderEvidence(w http.ResponseWriter, code int, v *viewer, d *evidenceData, problem, notice string) {
	if c.o.Witnesses != nil {
		ws := c.o.Witnesses()
		d.Threshold, d.Alarms = ws.Threshold, strings.Join(ws.Alarms, ", ")
		for _, s := range ws.Witnesses {
			row := witnessRow{Name: s.Name, State: s.State, Detail: s.Detail, Cosigned: s.Cosigned, Latest: s.Latest, CosignedAt: fmtTime(s.CosignedAt)}
			if s.Cosigned >= 0 {
				row.Lag = s.Latest - s.Cosigned
			} else {
				row.Lag = -1
			}
			d.Witnesses = append(d.Witnesses, row)
		}
	}
	c.reports.mu.Lock()
	d.Report = v.report
	dropped := d.Report != nil && d.Report.Dropped
	c.reports.mu.Unlock()
	if dropped {
		if problem == "" {
			problem = droppedReport(d.Report)
		}
		d.Report = nil
	}
	c.render(w, code, "evidence", "Evidence", v.frame(pageData{Problem: problem, Notice: notice, Data: d}, Path+"/evidence"))
}

// verifyJournal verifies this instance's log as readers do, on a
// snapshot of the store in force, once the read is journaled (a verify,
// via the console, naming v).
func (c *Console) verifyJournal(r *http.Request, v *viewer) journalState {
	c.reports.verifying.Lock()
	defer c.reports.verifying.Unlock()
	var st journalState
	if _, err := c.o.RecordRead(r.Context(), v.id, clientIP(r), certauth.ReadRequest{Action: "verify"}); err != nil {
		c.o.Logger.Error("console journal check: journal the read", "error", err, "by", v.who)
		return st
	}
	st.Checked = true
	ctx := r.Context()
	snap, err := c.o.Store().Snapshot(ctx)
	if err != nil {
		st.Problem = "the journal cannot be read: " + err.Error()
		return st
	}
	defer snap.Close()
	l, err := recorder.ReadLog(ctx, snap, recorder.ReadLogOptions{Verifier: c.o.Verifier, Events: recorder.EventNames(events.CertIssued, events.GrantRequested)})
	if err != nil {
		st.Problem = err.Error()
		return st
	}
	// Verification's step 10, as bastion verify --key checks this log
	// (member 0: its serials and grant numbers carry one ID, the first's).
	if ps := recorder.NumberProblems(l, 0); len(ps) > 0 {
		st.Problem = ps[0].String()
		if len(ps) > 1 {
			st.Problem += fmt.Sprintf(" (and %d more problems of serials or grant numbers)", len(ps)-1)
		}
		return st
	}
	// The head's time is a storage column no signature covers: shown
	// only once the log verified (ReadLog checks it against the last
	// verified leaf).
	if head, err := snap.Head(ctx); err == nil && head != nil {
		st.HeadTime = fmtTime(time.Unix(0, head.CreatedNS))
	}
	st.OK, st.Origin, st.Size = true, l.Checkpoint.Origin, l.Checkpoint.Size
	st.Sessions = len(l.Sessions)
	for _, p := range l.IndexProblems {
		st.IndexProblems = append(st.IndexProblems, p.String())
	}
	return st
}

// reportPeriod reads a time of the report form: a date (its midnight,
// UTC) or an RFC 3339 time, as "bastion evidence" takes --from and --to.
func reportPeriod(field, s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.ParseInLocation(time.DateOnly, s, time.UTC); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%s %q is not a date (2006-01-02) or an RFC 3339 time", field, s)
}

// names splits a list of names given in the form (by commas or spaces).
func names(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

// makeReport makes the examiner's report of the period the form gives:
// the read is journaled (journal.accessed, action evidence) before the
// journal is read; the report is built and rendered as "bastion
// evidence" does; its digests are journaled (evidence.generated), with
// the journal key's signed note over them; only then is it offered for
// download.
func (c *Console) makeReport(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := &evidenceData{
		From: r.PostFormValue("from"), To: r.PostFormValue("to"),
		Targets: r.PostFormValue("targets"), Identities: r.PostFormValue("identities"),
	}
	refuse := func(code int, why string) { c.renderEvidence(w, code, v, d, why, "") }
	from, err := reportPeriod("from", d.From)
	if err != nil {
		refuse(http.StatusBadRequest, err.Error())
		return
	}
	to, err := reportPeriod("to", d.To)
	if err != nil {
		refuse(http.StatusBadRequest, err.Error())
		return
	}
	if to.Before(from) {
		refuse(http.StatusBadRequest, "the period ends before it starts")
		return
	}
	targets, identities := names(d.Targets), names(d.Identities)
	if len(targets) > MaxFilterNames || len(identities) > MaxFilterNames {
		refuse(http.StatusBadRequest, "at most "+strconv.Itoa(MaxFilterNames)+" targets and identities")
		return
	}
	if !c.reports.making.TryLock() {
		refuse(http.StatusTooManyRequests, "Another report is being made; try again when it is done.")
		return
	}
	defer c.reports.making.Unlock()

	attrs := map[string]string{"period.from": from.UTC().Format(time.RFC3339), "period.to": to.UTC().Format(time.RFC3339)}
	if len(targets) > 0 {
		attrs["targets"] = strings.Join(targets, ",")
	}
	if len(identities) > 0 {
		attrs["identities"] = strings.Join(identities, ",")
	}
	read := map[string]string{"format": "html+json"}
	for k, val := range attrs {
		read[k] = val
	}
	if _, err := c.o.RecordRead(r.Context(), v.id, clientIP(r), certauth.ReadRequest{Action: "evidence", Attrs: read}); err != nil {
		c.o.Logger.Error("console evidence: journal the read", "error", err, "by", v.who)
		refuse(http.StatusServiceUnavailable, "The report could not be journaled, so it is not made; try again later.")
		return
	}
	var rep *evidence.Report
	opts, err := c.reportOptions()
	if err == nil {
		opts.From, opts.To, opts.Targets, opts.Identities, opts.Now = from, to, targets, identities, c.o.Now()
		rep, err = evidence.Build(r.Context(), c.o.Store(), opts)
	}
	var scope *evidence.ScopeError
	switch {
	case errors.As(err, &scope):
		refuse(http.StatusBadRequest, err.Error())
		return
	case err != nil:
		c.o.Logger.Error("console evidence", "error", err, "by", v.who)
		refuse(http.StatusInternalServerError, "The report could not be made: "+err.Error())
		return
	}
	bounds := c.bounds()
	made, err := c.packReport(r.Context(), v, r, opts, rep, attrs, min(MaxReportBytes, bounds.HeldReports))
	if errors.Is(err, errReportTooLarge) {
		refuse(http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	if err != nil {
		c.o.Logger.Error("console evidence", "error", err, "by", v.who)
		refuse(http.StatusServiceUnavailable, err.Error())
		return
	}
	if !c.holdReport(v, made, bounds.HeldReports) {
		// The console session ended while the report was made (signed
		// out, refused, pushed out): it is journaled, but nobody is left
		// to download it.
		c.o.Logger.Info("console evidence: made after its console session ended; not held", "by", v.who, "leaf", made.Leaf, "session", v.ref)
		c.page(w, http.StatusGone, "Signed out", pageData{Problem: "Your console session ended while the report was made (recorded at leaf " + strconv.FormatInt(made.Leaf, 10) + "); sign in and make it again to download it.", SignIn: true})
		return
	}
	c.o.Logger.Info("console evidence", "by", v.who, "leaf", made.Leaf, "session", v.ref)
	c.renderEvidence(w, http.StatusOK, v, d, "", "The report is made and recorded at leaf "+strconv.FormatInt(made.Leaf, 10)+": download it below.")
}

// reportOptions are what a report of this instance's journal is built
// with, as "bastion evidence" builds it on the bastion's host.
func (c *Console) reportOptions() (evidence.Options, error) {
	if c.o.Evidence == nil {
		return evidence.Options{}, errors.New("this console makes no reports")
	}
	return c.o.Evidence()
}

// holdReport keeps made as v's report, for its download, in place of
// the one v held: the reports held, all sessions together, take at most
// budget bytes, and the oldest held are dropped to make room (a report
// is never larger than the budget: packReport refuses it). It holds
// nothing, and says so, when v's console session has ended.
func (c *Console) holdReport(v *viewer, made *madeReport, budget int64) bool {
	// c.mu, then reports.mu (as forgetLocked takes them): a console
	// session that ended while its report was made holds none.
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.ContainsFunc(slices.Collect(maps.Values(c.sessions)), func(s *session) bool { return s == v.session }) {
		return false
	}
	c.reports.mu.Lock()
	defer c.reports.mu.Unlock()
	rs := &c.reports
	drop := func(i int) {
		old := rs.held[i]
		rs.heldBytes -= int64(len(old.Zip))
		old.Zip, old.Dropped = nil, true
		rs.held = append(rs.held[:i], rs.held[i+1:]...)
	}
	if i := slices.Index(rs.held, v.report); v.report != nil && i >= 0 {
		drop(i)
	}
	for len(rs.held) > 0 && rs.heldBytes+int64(len(made.Zip)) > budget {
		c.o.Logger.Info("console evidence: a held report is dropped to make room", "made", rs.held[0].Made, "period.from", rs.held[0].From, "period.to", rs.held[0].To)
		drop(0)
	}
	rs.held = append(rs.held, made)
	rs.heldBytes += int64(len(made.Zip))
	v.report = made
	return true
}

// droppedReport says that r was dropped, and what to do.
func droppedReport(r *madeReport) string {
	return "Your last report (of " + r.From + " to " + r.To + ", recorded at leaf " + strconv.FormatInt(r.Leaf, 10) +
		") was dropped from memory to make room for newer reports: make it again to download it."
}

// limitedBuffer refuses to grow past max bytes.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

// errReportTooLarge is the error of a report larger than the console
// hands out.
var errReportTooLarge = errors.New("the report is too large")

type reportTooLarge struct{ max int }

func (e reportTooLarge) Error() string {
	return "the report is larger than the console hands out (" + recorder.ByteCount(int64(e.max)) +
		`): make it with "bastion evidence" on the bastion's host, or for a shorter period`
}

func (e reportTooLarge) Is(target error) bool { return target == errReportTooLarge }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, reportTooLarge{b.max}
	}
	return b.Buffer.Write(p)
}

// packReport writes rep's files into a zip archive, journals their
// digests (evidence.generated) and adds the journal key's signed note
// over them (evidence.sig): the files "bastion evidence" writes into its
// directory, by the same names.
func (c *Console) packReport(ctx context.Context, v *viewer, r *http.Request, opts evidence.Options, rep *evidence.Report, attrs map[string]string, limit int64) (*madeReport, error) {
	buf := limitedBuffer{max: int(limit)}
	zw := zip.NewWriter(&buf)
	modified := c.o.Now()
	sums := map[string]string{}
	names := 0 // bytes of the file names, for the central directory
	err := evidence.WriteFiles(ctx, c.o.Store(), opts.Verifier, opts.Witnesses, rep, func(name string, write func(io.Writer) error) error {
		names += len(name)
		f, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: modified})
		if err != nil {
			return err
		}
		h := sha256.New()
		if err := write(io.MultiWriter(f, h)); err != nil {
			return err
		}
		sums[name] = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("the report could not be written: %w", err)
	}
	// What is still to come after the leaf (the signature's note, the
	// central directory: a fixed part and the name of each file) must fit
	// too: a report found too large only then would be journaled and not
	// handed out.
	if err := zw.Flush(); err != nil {
		return nil, fmt.Errorf("the report could not be written: %w", err)
	}
	if tail := int64(reportTailBytes + names + 64*len(sums)); int64(buf.Len())+tail > limit {
		return nil, errReportTooLarge
	}
	from, to := attrs["period.from"], attrs["period.to"]
	name := "evidence-" + strings.NewReplacer(":", "", "-", "").Replace(from) + "-" + strings.NewReplacer(":", "", "-", "").Replace(to) + ".zip"
	gen := map[string]string{"sha256.html": sums[evidence.HTMLFile], "sha256.json": sums[evidence.JSONFile], "out": name + " (console download)"}
	for k, val := range attrs {
		gen[k] = val
	}
	res, err := c.o.RecordRead(ctx, v.id, clientIP(r), certauth.ReadRequest{Event: recorder.EventEvidenceGenerated, Attrs: gen})
	if err != nil || res.Note == "" {
		return nil, fmt.Errorf("the report could not be recorded in the journal, so it is not handed out; try again later")
	}
	f, err := zw.CreateHeader(&zip.FileHeader{Name: evidence.SignatureFile, Method: zip.Deflate, Modified: modified})
	if err == nil {
		_, err = io.WriteString(f, res.Note)
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("the report could not be written: %w", err)
	}
	verdict := "the journal verifies"
	if !rep.Verification.Intact {
		verdict = "the journal does NOT verify (" + strconv.Itoa(len(rep.Verification.Problems)) + " problem(s)); the report says so first"
	}
	// The archive is held for its download: a copy, without the
	// buffer's spare capacity, so that what is held is what is counted.
	return &madeReport{
		Name: name, Zip: bytes.Clone(buf.Bytes()), Leaf: res.Leaf, SHA256HTML: gen["sha256.html"], SHA256JSON: gen["sha256.json"],
		From: from, To: to, Anchor: rep.Anchor.Level + " (" + rep.Anchor.Basis + ")", Verdict: verdict, Made: fmtTime(c.o.Now()),
	}, nil
}

// downloadReport hands out the last report made in the console session.
func (c *Console) downloadReport(w http.ResponseWriter, r *http.Request, v *viewer) {
	c.reports.mu.Lock()
	made := v.report
	var zip []byte
	dropped := false
	if made != nil {
		zip, dropped = made.Zip, made.Dropped
	}
	c.reports.mu.Unlock()
	if made == nil {
		c.page(w, http.StatusNotFound, "No report", pageData{Problem: "No report was made in this console session: make one on the evidence page.", Who: v.who, CSRF: v.csrf})
		return
	}
	if dropped {
		c.page(w, http.StatusGone, "Report dropped", v.frame(pageData{Problem: droppedReport(made)}, Path+"/evidence"))
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+made.Name+`"`)
	w.Header().Set("Content-Length", strconv.Itoa(len(zip)))
	w.Write(zip)
}
