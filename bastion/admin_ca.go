package bastion

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// AdminCARotatedRequest tells the server that "bastion ca rotate" gave a
// certificate authority of its home a new key, for it to journal
// (ca.rotated). The server checks it against the home's CA files: the new
// key is the role's active key, the old one among its retired keys.
type AdminCARotatedRequest struct {
	// Role is the CA: user, host or target.
	Role string `json:"role"`
	// OldFingerprint and NewFingerprint are the keys' SHA256:
	// fingerprints; Algorithm is the new key's type.
	OldFingerprint string `json:"old_fingerprint"`
	NewFingerprint string `json:"new_fingerprint"`
	Algorithm      string `json:"algorithm"`
	// Grace is how long the old key stays trusted, as a Go duration.
	Grace string `json:"grace"`
	// By is who the caller says they are; Token, if not empty, the
	// operator's OIDC token, which the server verifies to name them.
	By    string `json:"by,omitempty"`
	Token string `json:"token,omitempty"`
	// Check asks only whether the caller may rotate (its token verifies
	// and, when the policy names operators, names one): nothing is
	// journaled. "ca rotate" checks first, so that a refused operator
	// never replaces a CA key, then rotates, then has it journaled.
	Check bool `json:"check,omitempty"`
}

// AdminCARotatedResponse says where the rotation is journaled.
type AdminCARotatedResponse struct {
	Leaf int64 `json:"leaf"`
}

// CARotatedAttrs are the attributes of a ca.rotated leaf that say what was
// rotated; who rotated it is added by whoever journals it.
func CARotatedAttrs(req AdminCARotatedRequest) recorder.Attrs {
	return recorder.Attrs{
		"role": req.Role, "old.fingerprint": req.OldFingerprint, "new.fingerprint": req.NewFingerprint,
		"algorithm": req.Algorithm, "grace": req.Grace,
	}
}

// recordCARotated checks a rotation against the home's CA files and
// journals it, naming the caller as an operator action does and, as a
// read does, by the kernel's account of it (via serve).
func (s *Server) recordCARotated(ctx context.Context, req AdminCARotatedRequest, c *caller) (int64, error) {
	role, err := certauth.ParseRole(req.Role)
	if err != nil {
		return 0, badRequest("%v", err)
	}
	grace, err := time.ParseDuration(req.Grace)
	if err != nil || grace <= 0 {
		return 0, badRequest("grace %q is not a positive duration", printable(req.Grace))
	}
	as, err := certauth.LoadAuthorities(s.opts.Home, s.now())
	if err != nil {
		return 0, err
	}
	a := as.Get(role)
	if got := ssh.FingerprintSHA256(a.Signer.PublicKey()); got != req.NewFingerprint {
		return 0, &accessError{http.StatusConflict, fmt.Sprintf("the %s CA's active key is %s, not %s: nothing was journaled", role, got, printable(req.NewFingerprint))}
	}
	if !slices.ContainsFunc(a.Trusted[1:], func(t certauth.TrustedKey) bool { return ssh.FingerprintSHA256(t.Key) == req.OldFingerprint }) {
		return 0, &accessError{http.StatusConflict, fmt.Sprintf("%s is not a retired key of the %s CA: nothing was journaled", printable(req.OldFingerprint), role)}
	}
	attrs := CARotatedAttrs(req)
	attrs["role"], attrs["grace"] = string(role), grace.String()
	attrs["algorithm"] = string(a.Algorithm())
	attrs.Cap(128, "old.fingerprint")
	host, _ := os.Hostname()
	for k, v := range c.operatorAttrs() {
		attrs[k] = v
	}
	attrs["via"], attrs["uid"], attrs["pid"] = ViaServe, strconv.Itoa(c.uid), strconv.Itoa(c.pid)
	if c.user != "" {
		attrs["user"] = c.user
	}
	if host != "" {
		attrs["host"] = host
	}
	attrs["by"] = c.by()
	idx, err := s.journal.AppendEvent(ctx, events.CARotated, attrs)
	if err != nil {
		return 0, err
	}
	s.log.Warn("a CA key was rotated: restart serve for it to sign with the new key", "role", role, "by", c.by(), "leaf", idx)
	return idx, nil
}

// AdminCARotated asks the server running for home to journal a CA
// rotation. It returns ErrNoServer when none answers.
func AdminCARotated(ctx context.Context, home string, req AdminCARotatedRequest) (int64, error) {
	var out AdminCARotatedResponse
	err := adminCall(ctx, home, http.MethodPost, "/v1/ca/rotated", req, &out)
	return out.Leaf, err
}
