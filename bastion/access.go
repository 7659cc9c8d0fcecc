package bastion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/termtext"
	"github.com/bastionhq/bastion/storage/postgres"
)

// AccessSocketSuffix names serve's access socket: the journal's path with
// this suffix ("/var/lib/bastion/journal.db.sock"), so that a reader finds
// it from the journal's path alone.
//
// Through it, readers of the journal ask the running serve to journal
// their reads (POST /v1/access) and their examiner's reports (POST
// /v1/evidence), which only the journal's writer can. serve records the
// caller as the kernel reports the socket's peer (SO_PEERCRED), never as
// the caller says, and, when it gives an OIDC token, the identity serve
// verifies. Root, serve's own user and, with the configuration's
// access { group = "G" }, the members of G may use it: the socket is then
// mode 0660 and group G (else 0600), and the journal's files readable by
// G (see storage.Options ReaderGroup).
const AccessSocketSuffix = ".sock"

// ErrNoAccessSocket means no server answers on a journal's access socket:
// none holds the journal, or the one that does runs without one.
var ErrNoAccessSocket = errors.New("no bastion server answers on the journal's access socket")

// Access actions: what a journal.accessed leaf says the reader did.
var AccessActions = []string{"play", "export", "evidence", "show", "search", "verify", "list"}

// maxRequestBody bounds a request to the admin and access sockets.
const maxRequestBody = 1 << 20

// What a reader may say of its read (AccessRequest Attrs) and of its
// report (EvidenceRequest Attrs), each with the most bytes kept of it.
var (
	accessAttrs = map[string]int{
		"session": 64, "format": 64, "period.from": 64, "period.to": 64,
		"targets": 1024, "identities": 1024, "sample": 32, "seed": 64, "logs": 4096,
	}
	evidenceAttrs = map[string]int{
		"period.from": 64, "period.to": 64, "targets": 1024, "identities": 1024,
		"sample": 32, "seed": 64, "sha256.html": 64, "sha256.json": 64, "out": 1024, "logs": 4096,
	}
)

// readerText are the attributes of a read or a report that hold what the
// reader says, masked before they are journaled.
var readerText = []string{"session", "format", "targets", "identities", "out", "says.user", "logs"}

// AccessRequest asks serve to journal a read of its journal, before the
// reader shows anything of it: POST /v1/access on the access socket.
type AccessRequest struct {
	// Action is what the reader does, one of AccessActions.
	Action string `json:"action"`
	// Attrs say what is read: session, format, period.from, period.to,
	// targets, identities, sample, seed. Any other key is refused; each
	// value is kept on one line and cut to a bound.
	Attrs map[string]string `json:"attrs,omitempty"`
	// Token, if not empty, is the reader's OIDC token: serve verifies it
	// with its identity providers and records the identity, or refuses
	// the request when it does not verify.
	Token string `json:"token,omitempty"`
	// User is who the reader says it is: recorded as says.user, never
	// trusted (the kernel says who it is).
	User string `json:"user,omitempty"`
}

// AccessResponse is serve's answer to a recorded read.
type AccessResponse struct {
	// Leaf is the index of the journal.accessed leaf.
	Leaf int64 `json:"leaf"`
	// Verified is how the reader was named (VerifiedToken,
	// VerifiedAccount or VerifiedNone); Identity the person, when one
	// is known; Roles the identity's roles in policy (auditor,
	// operator), comma-separated.
	Verified string `json:"verified"`
	Identity string `json:"identity,omitempty"`
	Roles    string `json:"roles,omitempty"`
}

// EvidenceRequest asks serve to journal an examiner's report whose files
// are written, and to sign a note over it: POST /v1/evidence on the
// access socket.
type EvidenceRequest struct {
	// Attrs describe the report: period.from, period.to, targets,
	// identities, sample, seed, out (its directory), and sha256.html and
	// sha256.json (required: the files' SHA-256, lowercase hex). Any
	// other key is refused.
	Attrs map[string]string `json:"attrs"`
	// Token and User are as in AccessRequest.
	Token string `json:"token,omitempty"`
	User  string `json:"user,omitempty"`
}

// EvidenceResponse is serve's answer to a recorded report.
type EvidenceResponse struct {
	// Leaf is the index of the evidence.generated leaf.
	Leaf int64 `json:"leaf"`
	// Note is the signed note over the leaf's index and the digests
	// (recorder.EvidenceNote), signed with the journal's key.
	Note     string `json:"note"`
	Verified string `json:"verified"`
	Identity string `json:"identity,omitempty"`
	Roles    string `json:"roles,omitempty"`
}

// journalPath is the journal's absolute path as the configuration names
// it, "" when it cannot be known (no home and a relative name) or when the
// journal is a log in a PostgreSQL database: such a journal has no access
// socket beside it (reads across a database's logs are not recorded
// through serve yet).
func (s *Server) journalPath() string {
	j := s.opts.Config.Journal
	if j == "" || postgres.IsLocation(j) {
		return ""
	}
	if !filepath.IsAbs(j) {
		if s.opts.Home == "" {
			return ""
		}
		j = filepath.Join(s.opts.Home, j)
	}
	if abs, err := filepath.Abs(j); err == nil {
		j = abs
	}
	return j
}

// AccessSocket is the access socket's path, "" without one.
func (s *Server) AccessSocket() string {
	if s.accessLn == nil {
		return ""
	}
	return s.accessPath
}

// listenAccess listens on the access socket at path. A socket left there
// by a server that died is removed first, as the admin socket's is; one
// that answers, or a file that is no socket, is left and refused: the
// writer lock makes a second server on one journal impossible, so
// something else is wrong.
func listenAccess(path string, ac AccessConfig) (net.Listener, error) {
	// A socket's path is held in a sockaddr_un: 108 bytes on Linux, with
	// its terminating NUL.
	if len(path) > 107 {
		return nil, fmt.Errorf("access socket %s: the path is %d bytes, and a unix socket's path may be 107 at most: give the journal a shorter path", path, len(path))
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("access socket %s: a file that is not a socket is in its place: move it away", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("access socket %s answers: another bastion server serves this journal", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("access socket %s: remove the one a stopped server left: %w", path, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("access socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("access socket %s: another process made it meanwhile", path)
	}
	if err != nil {
		return nil, fmt.Errorf("access socket: %w", err)
	}
	// Until the chmod, the socket may be reachable by others (the
	// journal's directory is the group's): the peer check admits only
	// whom the configuration does.
	mode := fs.FileMode(0o600)
	if ac.Group != "" {
		mode = 0o660
		if err := os.Chown(path, -1, ac.GID); err != nil {
			ln.Close()
			return nil, fmt.Errorf("access socket: give it to group %s: %w", ac.Group, err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("access socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	return ln, nil
}

// warnUnreachable logs when the access group cannot reach the access
// socket and the journal: every directory above them must let the group
// (or everyone) search it.
func (s *Server) warnUnreachable(ac AccessConfig) {
	if ac.Group == "" {
		return
	}
	for dir := filepath.Dir(s.accessPath); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return
		}
		perm := fi.Mode().Perm()
		gid := -1
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			gid = int(st.Gid)
		}
		if perm&0o001 == 0 && (gid != ac.GID || perm&0o010 == 0) {
			s.log.Warn("the access group cannot reach the journal or its access socket: a directory above them does not let it in",
				"group", ac.Group, "directory", dir, "mode", fmt.Sprintf("%#o", uint32(perm)),
				"fix", "keep the journal in a directory of its own, of group "+ac.Group+" and mode 0750 (or 2750), under directories others may search")
			return
		}
		if dir == filepath.Dir(dir) {
			return
		}
	}
}

// accessError is an answer of the access socket that is not a success.
type accessError struct {
	status int
	msg    string
}

func (e *accessError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &accessError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// prefixed says that err, from decodeRequest, is about the request.
func prefixed(err error) error {
	var ae *accessError
	if errors.As(err, &ae) {
		return &accessError{ae.status, "bad request: " + ae.msg}
	}
	return err
}

// decodeRequest reads one JSON object of at most maxRequestBody bytes
// into v, refusing unknown fields and anything after the object.
func decodeRequest(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("data after the JSON object")
		}
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &accessError{http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxRequestBody)}
	case errors.Is(err, io.EOF):
		return badRequest("the body is empty: want a JSON object")
	case err != nil:
		return badRequest("%v", err)
	}
	return nil
}

// requestError writes the answer to a request decodeRequest refused,
// what naming the request ("bad revocation request").
func requestError(w http.ResponseWriter, what string, err error) {
	status := http.StatusBadRequest
	var ae *accessError
	if errors.As(err, &ae) {
		status = ae.status
	}
	adminError(w, status, fmt.Errorf("%s: %v", what, err))
}

// readAttrs checks what a reader says of its read against allowed (key:
// bound) and returns it on one line each, cut to its bound.
func readAttrs(in map[string]string, allowed map[string]int) (recorder.Attrs, error) {
	out := recorder.Attrs{}
	for _, k := range slices.Sorted(maps.Keys(in)) {
		bound, ok := allowed[k]
		if !ok {
			return nil, badRequest("bad request: attribute %q is not one a reader may set (allowed: %s)", printable(k), strings.Join(slices.Sorted(maps.Keys(allowed)), ", "))
		}
		out[k] = capText(termtext.OneLine(in[k]), bound)
	}
	return out, nil
}

// accessHandler serves the access socket.
func (s *Server) accessHandler() http.Handler {
	host, _ := os.Hostname()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Context().Value(connKey{}).(*net.UnixConn)
		p, err := peerOf(c)
		if err == nil {
			err = accessAdmits(p, s.opts.Config.Access)
		}
		if err != nil {
			s.log.Warn("access socket: refused a peer", "error", err)
			adminError(w, http.StatusForbidden, err)
			return
		}
		// The group's members cost a bounded amount: each may have
		// readRate records a second made for it (root and serve's own
		// user are not counted).
		if !p.self() && !s.readLimits.allow(p.uid) {
			adminError(w, http.StatusTooManyRequests, fmt.Errorf("uid %d asked for more than %v records a second (bursts of %d): wait, and read again", p.uid, readRate, readBurst))
			return
		}
		var out any
		switch {
		case r.URL.Path == "/v1/access" && r.Method == http.MethodPost:
			out, err = s.recordAccess(r, w, p, host)
		case r.URL.Path == "/v1/evidence" && r.Method == http.MethodPost:
			out, err = s.recordEvidence(r, w, p, host)
		case r.URL.Path == "/v1/access" || r.URL.Path == "/v1/evidence":
			err = &accessError{http.StatusMethodNotAllowed, "method " + r.Method + " is not allowed: use POST"}
		default:
			err = &accessError{http.StatusNotFound, "no such endpoint: the access socket serves POST /v1/access and POST /v1/evidence"}
		}
		var ae *accessError
		switch {
		case errors.As(err, &ae):
			adminError(w, ae.status, ae)
		case err != nil:
			s.log.Error("access socket: a read could not be recorded", "error", err)
			adminError(w, http.StatusServiceUnavailable, fmt.Errorf("the read could not be recorded: %w", err))
		default:
			writeAdminJSON(w, http.StatusOK, out)
		}
	})
}

// accessAdmits admits to the access socket root, serve's own user and the
// members of the access group, as the kernel reports the peer.
func accessAdmits(p *peer, ac AccessConfig) error {
	if p.self() || ac.Group != "" && p.inGroup(ac.GID) {
		return nil
	}
	who := "root and uid " + strconv.Itoa(os.Getuid())
	if ac.Group != "" {
		who += " and the members of group " + ac.Group
	}
	return fmt.Errorf("uid %d may not ask this server to record reads of its journal: only %s may", p.uid, who)
}

// identifyReader names the caller of the access socket; a token that does
// not verify refuses the request (403), and nothing is journaled.
func (s *Server) identifyReader(r *http.Request, p *peer, token, says string) (*caller, error) {
	c, err := s.identify(r.Context(), p, token, says)
	if err != nil {
		s.log.Warn("access socket: refused a reader's token", "uid", p.uid, "pid", p.pid, "error", err)
		return nil, &accessError{http.StatusForbidden, err.Error()}
	}
	return c, nil
}

// nameReader names the caller of the access socket in attrs, the leaf
// about to record its read or report: who it is (whoAttrs, with the
// policy in force, which it returns), and what it says of itself masked
// as every text kept.
func (s *Server) nameReader(r *http.Request, p *peer, host string, attrs recorder.Attrs, token, says string) (*caller, *policy.Policy, error) {
	c, err := s.identifyReader(r, p, token, says)
	if err != nil {
		return nil, nil, err
	}
	pol := s.Policy()
	maps.Copy(attrs, c.whoAttrs(pol, host))
	s.textMasker().Fields(attrs, readerText...)
	return c, pol, nil
}

// recordAccess journals a read: journal.accessed.
func (s *Server) recordAccess(r *http.Request, w http.ResponseWriter, p *peer, host string) (*AccessResponse, error) {
	var req AccessRequest
	if err := decodeRequest(w, r, &req); err != nil {
		return nil, prefixed(err)
	}
	if !slices.Contains(AccessActions, req.Action) {
		return nil, badRequest("bad request: action %q is not one of %s", printable(req.Action), strings.Join(AccessActions, ", "))
	}
	attrs, err := readAttrs(req.Attrs, accessAttrs)
	if err != nil {
		return nil, err
	}
	c, pol, err := s.nameReader(r, p, host, attrs, req.Token, req.User)
	if err != nil {
		return nil, err
	}
	attrs["action"] = req.Action
	idx, err := s.journal.AppendEvent(r.Context(), recorder.EventJournalAccessed, attrs)
	if err != nil {
		return nil, err
	}
	s.log.Info("journal read recorded", "action", req.Action, "by", c.by(), "leaf", idx)
	return &AccessResponse{Leaf: idx, Verified: c.verified, Identity: c.identity, Roles: c.roles(pol)}, nil
}

// recordEvidence journals an examiner's report, evidence.generated, and
// signs the note over it with the journal's key.
func (s *Server) recordEvidence(r *http.Request, w http.ResponseWriter, p *peer, host string) (*EvidenceResponse, error) {
	var req EvidenceRequest
	if err := decodeRequest(w, r, &req); err != nil {
		return nil, prefixed(err)
	}
	attrs, err := readAttrs(req.Attrs, evidenceAttrs)
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"sha256.html", "sha256.json"} {
		if !recorder.IsSHA256Hex(req.Attrs[k]) {
			return nil, badRequest("bad request: %s must be the file's SHA-256 in lowercase hex (64 digits)", k)
		}
	}
	c, pol, err := s.nameReader(r, p, host, attrs, req.Token, req.User)
	if err != nil {
		return nil, err
	}
	// The key before the leaf: a leaf without its note helps nobody.
	key, err := certauth.LoadJournalKey(s.opts.Home)
	if err != nil {
		return nil, err
	}
	idx, err := s.journal.AppendEvent(r.Context(), recorder.EventEvidenceGenerated, attrs)
	if err != nil {
		return nil, err
	}
	msg, err := recorder.SignEvidenceLeaf(key, idx, attrs)
	if err != nil {
		return nil, err
	}
	s.log.Info("examiner's report recorded", "by", c.by(), "leaf", idx)
	return &EvidenceResponse{Leaf: idx, Note: string(msg), Verified: c.verified, Identity: c.identity, Roles: c.roles(pol)}, nil
}

// RecordAccess asks the server whose access socket is sock to journal a
// read. It returns ErrNoAccessSocket when none answers there.
func RecordAccess(ctx context.Context, sock string, req AccessRequest) (*AccessResponse, error) {
	var out AccessResponse
	if err := socketCall(ctx, sock, "access socket", ErrNoAccessSocket, http.MethodPost, "/v1/access", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RecordEvidence asks the server whose access socket is sock to journal
// an examiner's report and sign its note. It returns ErrNoAccessSocket
// when none answers there.
func RecordEvidence(ctx context.Context, sock string, req EvidenceRequest) (*EvidenceResponse, error) {
	var out EvidenceResponse
	if err := socketCall(ctx, sock, "access socket", ErrNoAccessSocket, http.MethodPost, "/v1/evidence", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// accountsText is operator_accounts as serve.started and config.reloaded
// record it: "account=identity" pairs, sorted, comma-separated.
func accountsText(m map[string]string) string {
	pairs := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		pairs = append(pairs, k+"="+m[k])
	}
	return strings.Join(pairs, ",")
}

// How many reads and reports a second, and in one burst, serve records
// for one member of the access group.
const (
	readRate  = rate.Limit(20)
	readBurst = 200
)

// uidLimits rate-limits the access socket's callers, by uid. The uids it
// keeps are bounded: past maxLimitedUIDs it forgets them all, which only
// ever lets a caller in sooner.
type uidLimits struct {
	mu  sync.Mutex
	by  map[int]*rate.Limiter
	now func() time.Time // nil: time.Now
}

const maxLimitedUIDs = 4096

func (l *uidLimits) allow(uid int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.by == nil || len(l.by) >= maxLimitedUIDs {
		l.by = map[int]*rate.Limiter{}
	}
	lim := l.by[uid]
	if lim == nil {
		lim = rate.NewLimiter(readRate, readBurst)
		l.by[uid] = lim
	}
	now := time.Now
	if l.now != nil {
		now = l.now
	}
	return lim.AllowN(now(), 1)
}
