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
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bastionhq/bastion/certauth"
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

func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/revoke", func(w http.ResponseWriter, r *http.Request) {
		var req certauth.RevokeRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			adminError(w, http.StatusBadRequest, fmt.Errorf("bad revocation request: %v", err))
			return
		}
		// Who revoked is what the kernel says of the peer; what the
		// client says of itself is kept beside it.
		if cred, ok := r.Context().Value(credKey{}).(*unix.Ucred); ok {
			by := fmt.Sprintf("uid %d, pid %d", cred.Uid, cred.Pid)
			if req.By != "" {
				by += " (says " + req.By + ")"
			}
			req.By = by
		}
		res, err := s.Revoke(r.Context(), req)
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
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Context().Value(connKey{}).(*net.UnixConn)
		cred, err := checkPeer(c)
		if err != nil {
			s.log.Warn("admin socket: refused a peer", "error", err)
			adminError(w, http.StatusForbidden, err)
			return
		}
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), credKey{}, cred)))
	})
}

type credKey struct{}

// checkPeer admits only the server's own user and root, and returns the
// peer's credentials.
func checkPeer(c *net.UnixConn) (*unix.Ucred, error) {
	if c == nil {
		return nil, errors.New("not a unix socket connection")
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if credErr != nil {
		return nil, fmt.Errorf("peer credentials: %w", credErr)
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Getuid() {
		return nil, fmt.Errorf("uid %d may not administer a server run by uid %d", cred.Uid, os.Getuid())
	}
	return cred, nil
}

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
func AdminRevoke(ctx context.Context, home string, req certauth.RevokeRequest) (res *certauth.RevokeResult, warning string, err error) {
	path := filepath.Join(home, AdminSocket)
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, "", err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://bastion/v1/revoke", bytes.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hr)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, "", ErrNoServer
		}
		return nil, "", fmt.Errorf("admin socket %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		var e adminErrorResponse
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return nil, "", errors.New(e.Error)
		}
		return nil, "", fmt.Errorf("server answered %s", resp.Status)
	}
	var out adminRevokeResponse
	if err := json.Unmarshal(data, &out); err != nil || out.Result == nil {
		return nil, "", fmt.Errorf("server's answer is not a revocation result: %s", bytes.TrimSpace(data))
	}
	return out.Result, out.Warning, nil
}
