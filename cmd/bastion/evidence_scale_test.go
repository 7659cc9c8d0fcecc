package main

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/bastionhq/bastion/recorder/termtext"
	"github.com/bastionhq/bastion/storage"
)

// quarterSessions is the one-quarter report's size (the must-show:
// 10,000 sessions); -short generates a tenth of it.
func quarterSessions() int {
	if testing.Short() {
		return 1000
	}
	return 10000
}

// quarterEvidenceArgs is the command the must-show times: the whole
// quarter, 25 sessions sampled for detailed review.
func quarterEvidenceArgs(home, out string) []string {
	return []string{"--home", home, "evidence", "--from", quarterFrom.Format(time.DateOnly), "--to", quarterTo.Format(time.DateOnly),
		"--out", out, "--sample", "25", "--seed", "7", "--now", quarterTo.Add(time.Hour).Format(time.RFC3339)}
}

// runQuarterEvidence runs "bastion evidence" on a generated quarter in
// this process, as runEvidenceCmd does, and returns the report's JSON.
func runQuarterEvidence(t testing.TB, q *quarterJournal, out string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), quarterEvidenceArgs(q.home, out), &env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}); code != 0 {
		t.Fatalf("bastion evidence: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	data, err := os.ReadFile(filepath.Join(out, "evidence.json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestEvidenceQuarter is the must-show "a one-quarter report stays
// usable": a generated quarter of 10,000 sessions (buildQuarterJournal),
// its report with 25 sessions sampled, printed by Chromium to fewer than
// 40 pages, and every sampled session's bundle verifying offline with the
// journal's public key alone. How long it takes is reported here, and
// checked against its target by BenchmarkEvidenceQuarter (make bench).
func TestEvidenceQuarter(t *testing.T) {
	t.Parallel()
	browser := findChromium(t)
	q := buildQuarterJournal(t, quarterSpec{Sessions: quarterSessions(), Seed: 2026})
	t.Logf("generated %d sessions (%.1f frames, %.0f B of payload each), %d refused commands, %d certificates, %d grants in %v; journal %s",
		q.sessions, float64(q.frames)/float64(q.sessions), float64(q.payload)/float64(q.sessions), q.refusedCommands, q.certificates, q.grants,
		q.took.Round(time.Millisecond), byteSize(storage.SQLiteBytes(filepath.Join(q.home, "journal.db"))))
	if n := q.sessions / 100; q.refusedCommands < n-1 || q.refusedCommands > n {
		t.Errorf("%d refused commands for %d sessions, want one in a hundred", q.refusedCommands, q.sessions)
	}
	out := filepath.Join(t.TempDir(), "report")
	start := time.Now()
	data := runQuarterEvidence(t, q, out)
	t.Logf("bastion %s: %v", termtext.ShellJoin(quarterEvidenceArgs("HOME", "OUT")), time.Since(start).Round(time.Millisecond))

	var r struct {
		Summary struct {
			Sessions   int `json:"sessions"`
			Exceptions []struct {
				Kind string `json:"kind"`
				What string `json:"what"`
			} `json:"exceptions"`
		} `json:"summary"`
		Sample *struct {
			Size     int      `json:"size"`
			Seed     int64    `json:"seed"`
			Sessions []string `json:"sessions"`
		} `json:"sample"`
		Sessions []struct {
			ID       string `json:"id"`
			Detailed bool   `json:"detailed"`
			Bundle   string `json:"bundle"`
		} `json:"sessions"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}

	t.Run("exceptions", func(t *testing.T) {
		if r.Summary.Sessions != q.sessions {
			t.Errorf("the report counts %d sessions, the journal has %d", r.Summary.Sessions, q.sessions)
		}
		kinds := map[string]bool{}
		for _, e := range r.Summary.Exceptions {
			kinds[e.Kind] = true
		}
		// The five injected, each under its kind (unverified-operator:
		// the kill by uid 0); refusals and standing access come with the
		// everyday work.
		for _, k := range []string{"unclean-stop", "abandoned-session", "session-past-grant-end", "policy-refused", "unverified-operator", "refusals", "standing-access"} {
			if !kinds[k] {
				t.Errorf("no exception of kind %s; the generator injected: %q", k, q.injected)
			}
		}
		t.Logf("%d exceptions listed", len(r.Summary.Exceptions))
	})

	t.Run("sample", func(t *testing.T) {
		if r.Sample == nil || r.Sample.Size != 25 || r.Sample.Seed != 7 || len(r.Sample.Sessions) != 25 {
			t.Fatalf("sample: %+v, want 25 sessions with seed 7", r.Sample)
		}
		pub := filepath.Join(q.home, "journal.pub")
		bundles := 0
		for _, s := range r.Sessions {
			if !s.Detailed {
				continue
			}
			if s.Bundle == "" {
				t.Errorf("detailed session %s has no bundle", s.ID)
				continue
			}
			bundles++
			var stdout, stderr bytes.Buffer
			args := []string{"verify", "--bundle", filepath.Join(out, filepath.FromSlash(s.Bundle)), "--key", pub}
			if code := run(context.Background(), args, &env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}); code != 0 {
				t.Errorf("bastion %s: exit %d\n%s%s", termtext.ShellJoin(args), code, stdout.String(), stderr.String())
			}
		}
		files, _ := filepath.Glob(filepath.Join(out, "bundles", "*.bundle"))
		if bundles < len(r.Sample.Sessions) || len(files) != bundles {
			t.Errorf("%d detailed sessions with a bundle, %d files in bundles/, for a sample of %d", bundles, len(files), len(r.Sample.Sessions))
		}
	})

	t.Run("pdf", func(t *testing.T) {
		if browser == "" {
			t.Skip("chromium is not installed")
		}
		start := time.Now()
		pdf := printPDF(t, browser, filepath.Join(out, "evidence.html"))
		pages, err := pdfPageCount(pdf)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("chromium printed %s of HTML to %d pages (%s of PDF) in %v", byteSize(fileSize(filepath.Join(out, "evidence.html"))), pages,
			byteSize(int64(len(pdf))), time.Since(start).Round(time.Millisecond))
		if pages >= 40 {
			t.Errorf("the quarter's report prints to %d pages, want fewer than 40", pages)
		}
	})
}

// BenchmarkEvidenceQuarter times "bastion evidence" of a generated
// quarter of 10,000 sessions with 25 sampled (target: under 30 s), in
// this process, and prints its HTML to PDF with Chromium when there is
// one (target: fewer than 40 pages). Generating the journal is not timed.
//
//	go test -run '^$' -bench EvidenceQuarter -benchtime 1x -count 3 ./cmd/bastion
func BenchmarkEvidenceQuarter(b *testing.B) {
	q := buildQuarterJournal(b, quarterSpec{Sessions: 10000, Seed: 2026})
	journal := storage.SQLiteBytes(filepath.Join(q.home, "journal.db"))
	dir := b.TempDir()
	var out string
	for i := 0; b.Loop(); i++ {
		out = filepath.Join(dir, strconv.Itoa(i))
		runQuarterEvidence(b, q, out)
	}
	perReport := b.Elapsed().Seconds() / float64(b.N)
	// The peer, in the same run: "bastion verify" of the same journal,
	// which the report runs first, so that the ratio says what the
	// report costs beyond the verification an auditor runs anyway.
	start := time.Now()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--home", q.home, "verify", "--unrecorded"}, &env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}); code != 0 {
		b.Fatalf("verify: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	verify := time.Since(start).Seconds()
	// After the loop: b.Loop's start drops metrics reported before it.
	b.ReportMetric(perReport, "s/report")
	b.ReportMetric(perReport/verify, "report/verify")
	b.ReportMetric(q.took.Seconds(), "generate-s")
	b.ReportMetric(float64(journal)/1e6, "journal-MB")
	if browser := findChromium(b); browser != "" {
		pages, err := pdfPageCount(printPDF(b, browser, filepath.Join(out, "evidence.html")))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(pages), "pdf-pages")
	}
}

// findChromium is Debian's chromium, or "" when it is not installed,
// which in CI (CI=true) fails.
func findChromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (apt-get install chromium)")
	}
	return ""
}

// printPDF prints page (a file) to PDF with headless Chromium, as
// TestEvidenceChromium does.
func printPDF(t testing.TB, browser, page string) []byte {
	t.Helper()
	tmp := t.TempDir()
	pdf := filepath.Join(tmp, "evidence.pdf")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir="+filepath.Join(tmp, "profile"),
		"--print-to-pdf="+pdf, "--no-pdf-header-footer", "file://"+page)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium --print-to-pdf: %v\n%s", err, stderr.String())
	}
	data, err := os.ReadFile(pdf)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

var (
	rePDFPage   = regexp.MustCompile(`/Type\s*/Page\b`) // \b: not /Pages
	rePDFCount  = regexp.MustCompile(`/Type\s*/Pages\b[^>]*?/Count\s+(\d+)|/Count\s+(\d+)[^>]*?/Type\s*/Pages\b`)
	rePDFStream = regexp.MustCompile(`(?s)/Filter\s*/FlateDecode[^>]*>>\s*stream\r?\n`)
)

// pdfPageCount counts a PDF's pages twice: the page objects (/Type
// /Page), and the page tree's /Count (the root's is the largest). Object
// streams are inflated first, so that a writer that packs its objects
// into them is counted too. The two counts must agree.
func pdfPageCount(data []byte) (int, error) {
	if !bytes.HasPrefix(data, []byte("%PDF-")) {
		return 0, errors.New("not a PDF")
	}
	texts := [][]byte{data}
	for _, loc := range rePDFStream.FindAllIndex(data, -1) {
		zr, err := zlib.NewReader(bytes.NewReader(data[loc[1]:]))
		if err != nil {
			continue
		}
		inflated, err := io.ReadAll(io.LimitReader(zr, 64<<20))
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && len(inflated) == 0 {
			continue
		}
		if bytes.Contains(inflated, []byte("/Type")) {
			texts = append(texts, inflated)
		}
	}
	pages, count := 0, -1
	for _, text := range texts {
		pages += len(rePDFPage.FindAll(text, -1))
		for _, m := range rePDFCount.FindAllSubmatch(text, -1) {
			s := m[1]
			if len(s) == 0 {
				s = m[2]
			}
			if n, err := strconv.Atoi(string(s)); err == nil && n > count {
				count = n
			}
		}
	}
	switch {
	case pages == 0:
		return 0, errors.New("the PDF has no page objects")
	case count >= 0 && count != pages:
		return 0, fmt.Errorf("the PDF's page tree counts %d pages, and it has %d page objects", count, pages)
	}
	return pages, nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func byteSize(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
