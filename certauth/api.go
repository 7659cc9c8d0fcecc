package certauth

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"strings"
	"time"

	"github.com/bastionhq/bastion/policy/grants"
)

// The JSON shapes of the HTTPS API that "bastion serve" offers and
// "bastion login" uses. They are documented in docs/certificates.md and
// docs/grants.md; fields are only ever added.

// CertificateRequest is the body of POST /v1/certificates. The caller
// authenticates with "Authorization: Bearer <OIDC token>".
type CertificateRequest struct {
	// PublicKey is the key to certify, in authorized_keys format.
	PublicKey string `json:"public_key"`
	// Logins narrows the certificate's principals; empty means every
	// login policy grants.
	Logins []string `json:"logins,omitempty"`
	// TTL asks for a shorter lifetime than policy's maximum, as a Go
	// duration ("5m"); empty means the default.
	TTL string `json:"ttl,omitempty"`
	// Ticket names the task or change ticket the caller works on; it goes
	// into the key ID and the journal.
	Ticket string `json:"ticket,omitempty"`
}

// CertificateResponse is the answer to a granted CertificateRequest.
type CertificateResponse struct {
	// Certificate is the OpenSSH certificate in authorized_keys format,
	// ready to write as "<key>-cert.pub".
	Certificate     string    `json:"certificate"`
	Serial          uint64    `json:"serial"`
	KeyID           string    `json:"key_id"`
	Identity        string    `json:"identity"`
	Principals      []string  `json:"principals"`
	ValidAfter      time.Time `json:"valid_after"`
	ValidBefore     time.Time `json:"valid_before"`
	Extensions      []string  `json:"extensions"`
	SourceAddresses []string  `json:"source_addresses,omitempty"`
	// Rule is the policy rule that granted the certificate.
	Rule string `json:"rule"`
	// KnownHosts are the @cert-authority lines that make ssh trust the
	// bastion and every target behind it.
	KnownHosts []string `json:"known_hosts"`
	// SSHAddress is the bastion's SSH listener ("host:port"), if it runs one.
	SSHAddress string `json:"ssh_address,omitempty"`
}

// CAResponse is the answer to GET /v1/ca: every CA public key currently
// trusted (the active one first, then any still in their rotation grace
// period) and the lines to paste into OpenSSH configuration.
type CAResponse struct {
	UserCA   []string `json:"user_ca"`
	HostCA   []string `json:"host_ca"`
	TargetCA []string `json:"target_ca"`
	// KnownHosts are "@cert-authority" lines for clients' known_hosts.
	KnownHosts []string `json:"known_hosts"`
	// TrustedUserCAKeys is the content of the file sshd_config's
	// TrustedUserCAKeys names on a target (the target CA's keys).
	TrustedUserCAKeys []string `json:"trusted_user_ca_keys"`
	// SSHDConfig are the sshd_config lines for a target.
	SSHDConfig []string `json:"sshd_config"`
	// Issuers are the identity providers the bastion accepts tokens from.
	Issuers []IssuerInfo `json:"issuers"`
	// SSHAddress is the bastion's SSH listener ("host:port"), if any.
	SSHAddress string `json:"ssh_address,omitempty"`
}

// IssuerInfo describes one configured identity provider to clients.
type IssuerInfo struct {
	Name     string   `json:"name"`
	Issuer   string   `json:"issuer"`
	Audience []string `json:"audience"`
	// DeviceClientID, when set, is the OAuth client "bastion login" uses
	// for the device authorization flow with this issuer (humans).
	DeviceClientID string `json:"device_client_id,omitempty"`
	// DeviceScopes are the scopes to ask for in the device flow.
	DeviceScopes []string `json:"device_scopes,omitempty"`
}

// GrantRequest is the body of POST /v1/grants: a request for just-in-time
// access to Target as Login, for Duration. The answer (201) is the
// [grants.Grant], pending until approved.
type GrantRequest struct {
	Target string `json:"target"`
	Login  string `json:"login"`
	// Duration is a Go duration ("30m"); policy may cap it.
	Duration string `json:"duration"`
	// Reason is required: what the access is for (at most 1000 bytes).
	Reason string `json:"reason"`
	Ticket string `json:"ticket,omitempty"`
	// Command, if set, limits the grant to that exec command.
	Command string `json:"command,omitempty"`
}

// GrantDecisionRequest is the (optional) body of POST
// /v1/grants/{id}/approve, /deny and /revoke. The answer is the [grants.Grant]
// after the decision.
type GrantDecisionRequest struct {
	Comment string `json:"comment,omitempty"`
}

// GrantList is the answer to GET /v1/grants[?state=STATE]: the caller's
// own grants and those the caller may approve, oldest first.
type GrantList struct {
	Grants []grants.Grant `json:"grants"`
}

// ErrorResponse is the body of every non-2xx answer.
type ErrorResponse struct {
	// Error is a sentence for a human.
	Error string `json:"error"`
	// Reason is a stable machine-readable code ("token_expired",
	// "key_too_weak", "denied", "rate_limited"…).
	Reason string `json:"reason"`
}

// TLSFingerprint is how the API's TLS certificate is named for pinning
// ("bastion login --ca-fingerprint"): "SHA256:" and the unpadded base64 of
// the SHA-256 of the certificate's DER encoding, the form ssh-keygen uses
// for keys.
func TLSFingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// SameFingerprint compares two fingerprints in TLSFingerprint form,
// ignoring the case of the "SHA256:" prefix.
func SameFingerprint(a, b string) bool {
	pa, ra, oka := strings.Cut(a, ":")
	pb, rb, okb := strings.Cut(b, ":")
	return oka && okb && strings.EqualFold(pa, "sha256") && strings.EqualFold(pb, "sha256") && ra == rb && ra != ""
}
