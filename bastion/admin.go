package bastion

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/termtext"
)

// AdminSocket is the name of the serving process's admin socket in the home
// directory. Only the user the server runs as (and root) may use it: the
// home directory is 0700, the socket 0600, and each connection's peer
// credentials are checked.
const AdminSocket = "admin.sock"

// ErrNoServer means no server answers on the home's admin socket.
var ErrNoServer = errors.New("no bastion server is running for this home")

func listenAdmin(home string) (net.Listener, error) {
	path := filepath.Join(home, AdminSocket)
	if _, err := os.Lstat(path); err == nil {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("another bastion server is running for home %s (its admin socket %s answers)", home, path)
		}
		// A socket left by a server that died: nobody listens on it.
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	// The home is 0700, so nobody else can reach the socket between its
	// creation and the chmod (a umask would change the whole process's).
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	return ln, nil
}

type connKey struct{}

// EventAdminRefused records an operator action the admin socket refused:
// a token that does not verify, or an identity that is not one of the
// policy's operators. Its attributes: action (kill, revoke, grant.revoke,
// ca.rotated), error, what the action named (session, serials, identity,
// grant, role), by, and the operator* attributes of the caller (see
// docs/journal-format.md, section 6.2).
const EventAdminRefused = events.AdminRefused

// ErrNotOperator refuses an operator action by an identity that is not one
// of the policy's operators.
var ErrNotOperator = errors.New("not an operator")

// notOperator is the refusal of who, not one of pol's operators.
func notOperator(who string, pol *policy.Policy) error {
	return fmt.Errorf("%w: %s is not one of the operators the policy names (%s)", ErrNotOperator, who, strings.Join(pol.Operators, ", "))
}

// adminRevokeRequest is a revocation through the admin socket.
type adminRevokeRequest struct {
	certauth.RevokeRequest
	// Token is the operator's OIDC token, if they give one.
	Token string `json:"token,omitempty"`
}

// operator names the caller of an operator action (action, naming what in
// subject) and checks it: a token that does not verify, or, when the
// policy names operators, an identity (from a token or operator_accounts)
// that is not one, is refused (403) and journaled as admin.refused. A
// caller known only by its OS account may act: its leaf says so
// (operator.verified = none).
func (s *Server) operator(r *http.Request, action string, subject recorder.Attrs, token, says string) (*caller, error) {
	p, _ := r.Context().Value(peerKey{}).(*peer)
	c, err := s.identify(r.Context(), p, token, says)
	pol := s.Policy() // one policy for the check and its message
	var refused *caller
	switch {
	case err != nil:
		refused = &caller{peer: p, user: p.account(), says: capText(termtext.OneLine(says), maxSays), verified: VerifiedNone}
	case len(pol.Operators) > 0 && c.id != nil && !pol.Operator(c.id):
		refused = c
		err = notOperator(c.identity, pol)
	default:
		return c, nil
	}
	attrs := refused.operatorAttrs()
	if refused == c {
		attrs["by"] = c.by()
	} else {
		// The token did not verify: nobody is named.
		delete(attrs, "operator.verified")
		attrs["by"] = refused.by()
	}
	s.journalRefused(r.Context(), "admin socket", action, attrs, subject, err)
	return nil, err
}

// journalRefused journals an operator action refused (admin.refused) by
// where ("admin socket", "console"): attrs name the operator, subject
// what the action named.
func (s *Server) journalRefused(ctx context.Context, where, action string, attrs, subject recorder.Attrs, err error) {
	for k, v := range subject {
		attrs[k] = v
	}
	attrs.Cap(maxClientText, "session", "identity", "grant")
	attrs["action"] = action
	attrs["error"] = capText(err.Error(), 1024)
	if _, jerr := s.journal.AppendEvent(ctx, EventAdminRefused, attrs); jerr != nil {
		s.log.Error("journal a refused operator action", "error", jerr)
	}
	s.log.Warn(where+": refused an operator action", "action", action, "by", attrs["by"], "error", err)
}

func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/revoke", func(w http.ResponseWriter, r *http.Request) {
		var req adminRevokeRequest
		if err := decodeRequest(w, r, &req); err != nil {
			requestError(w, "bad revocation request", err)
			return
		}
		subject := recorder.Attrs{}
		if len(req.Serials) > 0 {
			subject["serials"] = fmt.Sprint(req.Serials)
		}
		if req.Identity != "" {
			subject["identity"] = req.Identity
		}
		// Who revoked is what the kernel says of the peer, and the
		// person a token or the configuration names; what the client
		// says of itself is kept beside it.
		c, err := s.operator(r, "revoke", subject, req.Token, req.By)
		if err != nil {
			adminError(w, http.StatusForbidden, err)
			return
		}
		req.By, req.Attrs = c.by(), c.operatorAttrs()
		res, err := s.Revoke(r.Context(), req.RevokeRequest)
		if err != nil && res == nil {
			adminError(w, http.StatusConflict, err)
			return
		}
		out := adminRevokeResponse{Result: res}
		if err != nil {
			out.Warning = err.Error()
		}
		writeAdminJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/sessions", func(w http.ResponseWriter, r *http.Request) {
		live := s.LiveSessions()
		if live == nil {
			live = []front.LiveSession{}
		}
		writeAdminJSON(w, http.StatusOK, live)
	})
	mux.HandleFunc("POST /v1/grants/revoke", func(w http.ResponseWriter, r *http.Request) {
		var req AdminGrantRevokeRequest
		if err := decodeRequest(w, r, &req); err != nil {
			requestError(w, "bad grant revocation", err)
			return
		}
		c, err := s.operator(r, "grant.revoke", recorder.Attrs{"grant": req.ID}, req.Token, req.By)
		if err != nil {
			adminError(w, http.StatusForbidden, err)
			return
		}
		by := c.by()
		g, err := s.grants.Revoke(r.Context(), grants.GrantDecision{ID: req.ID, Comment: req.Comment, Operator: by, OperatorAttrs: c.operatorAttrs()})
		var ge *grants.GrantError
		switch {
		case errors.Is(err, grants.ErrGrantNotFound):
			adminError(w, http.StatusNotFound, err)
		case errors.As(err, &ge) && !errors.Is(err, grants.ErrGrantJournal):
			adminError(w, http.StatusConflict, err)
		case err != nil:
			adminError(w, http.StatusServiceUnavailable, err)
		default:
			s.log.Info("grant revoked by an operator", "grant", g.ID, "by", by)
			writeAdminJSON(w, http.StatusOK, g)
		}
	})
	mux.HandleFunc("POST /v1/sessions/kill", func(w http.ResponseWriter, r *http.Request) {
		var req AdminKillRequest
		if err := decodeRequest(w, r, &req); err != nil {
			requestError(w, "bad kill request", err)
			return
		}
		c, err := s.operator(r, "kill", recorder.Attrs{"session": req.ID}, req.Token, req.By)
		if err != nil {
			adminError(w, http.StatusForbidden, err)
			return
		}
		l, err := s.KillSession(r.Context(), req.ID, req.Reason, c.by(), c.operatorAttrs())
		switch {
		case errors.Is(err, ErrNoLiveSession):
			adminError(w, http.StatusNotFound, fmt.Errorf("%w: %q", err, req.ID))
		case err != nil:
			adminError(w, http.StatusConflict, err)
		default:
			writeAdminJSON(w, http.StatusOK, l)
		}
	})
	mux.HandleFunc("POST /v1/ca/rotated", func(w http.ResponseWriter, r *http.Request) {
		var req AdminCARotatedRequest
		if err := decodeRequest(w, r, &req); err != nil {
			requestError(w, "bad CA rotation record", err)
			return
		}
		c, err := s.operator(r, "ca.rotated", recorder.Attrs{"role": printable(req.Role)}, req.Token, req.By)
		if err != nil {
			adminError(w, http.StatusForbidden, err)
			return
		}
		if req.Check {
			writeAdminJSON(w, http.StatusOK, AdminCARotatedResponse{Leaf: -1})
			return
		}
		leaf, err := s.recordCARotated(r.Context(), req, c)
		var ae *accessError
		switch {
		case errors.As(err, &ae):
			adminError(w, ae.status, ae)
		case err != nil:
			adminError(w, http.StatusServiceUnavailable, err)
		default:
			writeAdminJSON(w, http.StatusOK, AdminCARotatedResponse{Leaf: leaf})
		}
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Context().Value(connKey{}).(*net.UnixConn)
		p, err := peerOf(c)
		if err == nil && !p.self() {
			err = fmt.Errorf("uid %d may not administer a server run by uid %d", p.uid, os.Getuid())
		}
		if err != nil {
			s.log.Warn("admin socket: refused a peer", "error", err)
			adminError(w, http.StatusForbidden, err)
			return
		}
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), peerKey{}, p)))
	})
}

type peerKey struct{}

type adminRevokeResponse struct {
	Result  *certauth.RevokeResult `json:"result"`
	Warning string                 `json:"warning,omitempty"`
}

type adminErrorResponse struct {
	Error string `json:"error"`
}

func adminError(w http.ResponseWriter, status int, err error) {
	writeAdminJSON(w, status, adminErrorResponse{Error: err.Error()})
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// ServerRunning reports whether a server answers on home's admin socket.
func ServerRunning(home string) bool {
	c, err := net.DialTimeout("unix", filepath.Join(home, AdminSocket), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// AdminRevoke asks the server running for home to revoke. It returns
// ErrNoServer when none answers, so that the caller can revoke in the
// journal directly. A non-empty warning means the revocation was journaled
// but something after it (the KRL) failed.
//
// token, if not empty, is the operator's OIDC token: the server verifies
// it and names them in the journal, or refuses the revocation.
func AdminRevoke(ctx context.Context, home string, req certauth.RevokeRequest, token string) (res *certauth.RevokeResult, warning string, err error) {
	var out adminRevokeResponse
	if err := adminCall(ctx, home, http.MethodPost, "/v1/revoke", adminRevokeRequest{RevokeRequest: req, Token: token}, &out); err != nil {
		return nil, "", err
	}
	if out.Result == nil {
		return nil, "", errors.New("the server's answer is not a revocation result")
	}
	return out.Result, out.Warning, nil
}

// AdminKillRequest asks the server to end a live session.
type AdminKillRequest struct {
	// ID is the journal session's ID, or a prefix naming one live
	// session.
	ID string `json:"id"`
	// Reason, if any, is told to the client and recorded.
	Reason string `json:"reason,omitempty"`
	// By is who asks, as the client says; the server records the peer's
	// uid and pid beside it.
	By string `json:"by,omitempty"`
	// Token, if not empty, is the operator's OIDC token: the server
	// verifies it and names them (see AdminCARotatedRequest).
	Token string `json:"token,omitempty"`
}

// AdminGrantRevokeRequest is a revocation of a grant by an operator of
// the bastion, through its admin socket.
type AdminGrantRevokeRequest struct {
	ID      string `json:"id"`
	Comment string `json:"comment,omitempty"`
	// By is who the caller says they are; the journal records the
	// socket peer's uid and pid beside it.
	By string `json:"by,omitempty"`
	// Token is the operator's OIDC token, if they give one.
	Token string `json:"token,omitempty"`
}

// AdminRevokeGrant revokes a grant through the admin socket of the server
// running for home, as an operator: any grant, pending or active, without
// an OIDC token. It returns ErrNoServer when none answers.
func AdminRevokeGrant(ctx context.Context, home string, req AdminGrantRevokeRequest) (grants.Grant, error) {
	var out grants.Grant
	err := adminCall(ctx, home, http.MethodPost, "/v1/grants/revoke", req, &out)
	return out, err
}

// AdminKill asks the server running for home to end a live session. It
// returns ErrNoServer when none answers, and an error wrapping
// ErrNoLiveSession when no live session has that ID.
func AdminKill(ctx context.Context, home string, req AdminKillRequest) (LiveSessionResult, error) {
	var out LiveSessionResult
	err := adminCall(ctx, home, http.MethodPost, "/v1/sessions/kill", req, &out)
	return out, err
}

// adminLiveSessions lists the live sessions of the server running for
// home. It returns ErrNoServer when none answers.
func adminLiveSessions(ctx context.Context, home string) ([]front.LiveSession, error) {
	var out []front.LiveSession
	err := adminCall(ctx, home, http.MethodGet, "/v1/sessions", nil, &out)
	return out, err
}

// adminCall sends in (if not nil) as JSON to the admin socket of home's
// server and decodes its answer into out.
func adminCall(ctx context.Context, home, method, path string, in, out any) error {
	err := socketCall(ctx, filepath.Join(home, AdminSocket), "admin socket", ErrNoServer, method, path, in, out)
	var se *socketError
	if errors.As(err, &se) && se.status == http.StatusNotFound && strings.HasPrefix(se.msg, ErrNoLiveSession.Error()) {
		return fmt.Errorf("%w%s", ErrNoLiveSession, strings.TrimPrefix(se.msg, ErrNoLiveSession.Error()))
	}
	return err
}

// socketError is the error a server answered on one of its sockets.
type socketError struct {
	status int
	msg    string
}

func (e *socketError) Error() string { return e.msg }

// socketCall sends in (if not nil) as JSON to the server's socket sock
// (what names it in messages), and decodes its answer into out. none is
// the error when nothing answers there.
func socketCall(ctx context.Context, sock, what string, none error, method, path string, in, out any) error {
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	hr, err := http.NewRequestWithContext(ctx, method, "http://bastion"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(hr)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return none
		}
		return fmt.Errorf("%s %s: %w", what, sock, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxRequestBody))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e adminErrorResponse
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			return fmt.Errorf("the server answered %s", resp.Status)
		}
		return &socketError{status: resp.StatusCode, msg: e.Error}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("the server's answer is not what %s %s returns: %s", method, path, bytes.TrimSpace(data))
	}
	return nil
}
