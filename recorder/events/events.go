// Package events names what bastion's journal says: the names of its event
// leaves, and the values of the "reason" attribute that readers (the
// evidence report, the command line, tests) branch on. Writers and readers
// take the names from here, so a name is spelled once and a reader cannot
// look for a name no writer uses.
//
// Every name is part of the journal's format (docs/journal-format.md,
// section 6.2, says which attributes each event holds) or of the HTTPS
// API's error codes (docs/certificates.md and docs/grants.md): a name is
// never changed, only added. The package has no dependencies, so any
// package may import it.
package events

// Events of the certificate authority.
const (
	// CAStarted records the authority an issuer starts with: the CA's
	// role, its key's fingerprint, the keys it trusts, and the longest
	// lifetime it issues.
	CAStarted = "ca.started"
	// CARotated records that a certificate authority was given a new key
	// ("bastion ca rotate"): the role, both keys' fingerprints, the new
	// key's algorithm, the grace period, and who rotated it.
	CARotated = "ca.rotated"
	// CertIssued records an issued user certificate: serial, key ID,
	// identity, principals, validity; committed before the certificate
	// is returned.
	CertIssued = "cert.issued"
	// CertRefused records a refused certificate request, with its
	// reason (one of the API refusal reasons below).
	CertRefused = "cert.refused"
	// CertRevoked records revoked serials, or an identity revoked up to
	// a time, with who revoked them and why.
	CertRevoked = "cert.revoked"
)

// Events of just-in-time grants. Every transition of a grant is one of
// them, committed before it takes effect; GrantRefused records an action on
// grants that was turned down.
const (
	GrantRequested = "grant.requested"
	GrantApproved  = "grant.approved"
	GrantDenied    = "grant.denied"
	GrantActivated = "grant.activated"
	GrantExpired   = "grant.expired"
	GrantEnded     = "grant.ended"
	GrantRevoked   = "grant.revoked"
	GrantRefused   = "grant.refused"
)

// Events of the SSH front door.
const (
	// AuthRefused is a refused SSH authentication, with its reason (one
	// of the SSH refusal reasons below).
	AuthRefused = "ssh.auth_refused"
	// ConnRefused records connections closed at accept. It is
	// rate-bounded: the first refusal for an address is journaled at
	// once, the following ones are counted and summarized (attribute
	// refused).
	ConnRefused = "ssh.connection_refused"
	// RequestRefused is a request of an authenticated connection the
	// bastion refused (agent or X11 forwarding, remote port forwarding,
	// an exec a command target does not take).
	RequestRefused = "ssh.request_refused"
	// ChannelRefused is a channel the bastion refused to open, with the
	// reason.
	ChannelRefused = "ssh.channel_refused"
	// Jump is an inner connection of ssh -J authenticated: who jumped to
	// which target, from where.
	Jump = "ssh.jump"
	// PolicyDecision is the decision on a port forward or another
	// request outside a session; sessions carry theirs in their start
	// leaf.
	PolicyDecision = "policy.decision"
)

// Events of the running server.
const (
	// ServeStarted and ServeStopped record the start and stop of the
	// server, and so of logging, as examiners ask.
	ServeStarted = "serve.started"
	ServeStopped = "serve.stopped"
	// PolicyLoaded records every policy put in force, with its hash;
	// PolicyRefused a reload refused for mistakes, with its errors (the
	// old policy stays in force).
	PolicyLoaded  = "policy.loaded"
	PolicyRefused = "policy.refused"
	// ConfigReloaded records a configuration reload put in force (the
	// file's hash, what changed); ConfigReloadRefused one refused because
	// it changes what only a restart can.
	ConfigReloaded      = "config.reloaded"
	ConfigReloadRefused = "config.reload_refused"
	// AdminRefused records an operator action the admin socket refused:
	// a token that does not verify, or an identity that is not one of
	// the policy's operators.
	AdminRefused = "admin.refused"
	// JournalRecovered is the first event a journal reopened after a
	// fault records, after the end leaves of the sessions the fault
	// ended.
	JournalRecovered = "journal.recovered"
	// WitnessRefused, WitnessStale and WitnessRecovered record a
	// witness's change of state: one leaf per change, never one per push.
	WitnessRefused   = "witness.refused"
	WitnessStale     = "witness.stale"
	WitnessRecovered = "witness.recovered"
	// SessionKillRequested records a "sessions kill" of a session that
	// another member of the cluster holds: the member that holds it ends
	// it, and its end leaf names this leaf (kill.log, kill.leaf).
	SessionKillRequested = "session.kill_requested"
)

// Events of reads of the journal.
const (
	// JournalAccessed records a read of the journal by a person or a
	// tool: a session played or exported, a report made, a journal
	// verified. Its attributes: action ("play", "export"…), session (when
	// one session was read), format (for exports), who read it (user and
	// uid, the OS account; host; pid; via, "serve" when the running
	// server recorded it for the reader, "reader" when the reader wrote
	// it itself; the identity a token proved, when one did).
	JournalAccessed = "journal.accessed"
	// EvidenceGenerated records an examiner's report once its files are
	// written: the period, the filters, the SHA-256 of each file, and who
	// made it (as JournalAccessed).
	EvidenceGenerated = "evidence.generated"
)

// Events of the web console.
const (
	// ConsoleSignedIn records a person's sign-in to the web console: the
	// identity the provider's ID token proved, the console roles the
	// policy gives it (operator, auditor, approver), the client's address
	// and the console session's reference (never the session's cookie).
	ConsoleSignedIn = "console.signed_in"
	// ConsoleSignedOut records the end of a console session by its
	// person's sign-out, with the identity and the session's reference.
	ConsoleSignedOut = "console.signed_out"
	// ConsoleRefused records a sign-in the console refused after the
	// provider proved the identity: no console session was made. Its
	// reason is ReasonNotConsoleRole, ReasonIdentityRevoked or
	// ReasonConsoleFull.
	ConsoleRefused = "console.refused"
)

// Reasons of the console's refused sign-ins (console.refused).
const (
	// ReasonNotConsoleRole: the policy names the identity none of the
	// console's roles (operator, auditor, approver).
	ReasonNotConsoleRole = "not_a_console_role"
	// ReasonConsoleFull: the console holds as many sessions as it may.
	ReasonConsoleFull = "console_full"
)

// Reasons of refusals by the HTTPS API: the "reason" of its error answers
// and of cert.refused and grant.refused events.
const (
	// ReasonDenied: policy allows no such certificate or grant.
	ReasonDenied             = "denied"
	ReasonRequestMalformed   = "request_malformed"
	ReasonIdentityRevoked    = "identity_revoked"
	ReasonRateLimited        = "rate_limited"
	ReasonJournalUnavailable = "journal_unavailable"
	ReasonTokenMissing       = "token_missing"
)

// Reasons a public key is refused by the API.
const (
	ReasonKeyMalformed     = "key_malformed"
	ReasonKeyIsCertificate = "key_is_certificate"
	ReasonKeyTypeRefused   = "key_type_refused"
	ReasonKeyTooWeak       = "key_too_weak"
	ReasonKeyIsCA          = "key_is_ca"
)

// Reasons a token is refused: the codes of the OIDC verifier's errors, sent
// to clients as the API's reason.
const (
	ReasonTokenMalformed        = "token_malformed"        // not a compact JWS with JSON header and payload, or a claim of the wrong type
	ReasonTokenTooLarge         = "token_too_large"        // longer than the verifier's largest token
	ReasonIssuerUnknown         = "issuer_unknown"         // "iss" names no configured provider
	ReasonAlgNotAllowed         = "alg_not_allowed"        // "none", HMAC, or any algorithm not in the provider's allow-list
	ReasonUnknownKey            = "unknown_key"            // "kid" not in the provider's key set, even after a refetch
	ReasonBadSignature          = "bad_signature"          // the signature does not verify with the provider's keys
	ReasonWrongIssuer           = "wrong_issuer"           // the token's actor ("act.iss") belongs to another issuer
	ReasonWrongAudience         = "wrong_audience"         // "aud" names none of the provider's audiences
	ReasonTokenExpired          = "token_expired"          // "exp" has passed
	ReasonTokenNotYetValid      = "token_not_yet_valid"    // "nbf" is in the future
	ReasonTokenIssuedInFuture   = "token_issued_in_future" // "iat" is in the future
	ReasonTokenTooOld           = "token_too_old"          // "iat" is older than the provider's largest token age
	ReasonMissingClaim          = "missing_claim"          // no "iss", "sub", "iat" or "exp"
	ReasonProviderUnavailable   = "provider_unavailable"   // discovery or the key set cannot be fetched: the server's problem, not the token's
	ReasonProviderMisconfigured = "provider_misconfigured" // the provider's discovery document names another issuer than configured
)

// Reasons of refused grant actions, besides the token and rate-limit ones
// certificate requests share and ReasonDenied (policy has no grant-only
// role for the request).
const (
	ReasonGrantNotFound    = "grant_not_found"
	ReasonOwnGrant         = "own_grant"
	ReasonNotApprover      = "not_approver"
	ReasonSponsorConflict  = "sponsor_conflict"
	ReasonGrantState       = "grant_state"
	ReasonAlreadyApproved  = "already_approved"
	ReasonGrantsNotEnabled = "grants_not_enabled"
)

// Reasons the API refuses to journal a read (POST /v1/reads): the
// caller is not one of the policy's auditors or operators, or the
// instance records no reads through its API.
const (
	ReasonNotReader       = "not_a_reader"
	ReasonReadsNotEnabled = "reads_not_enabled"
)

// Reasons an SSH authentication is refused, as ssh.auth_refused events
// say.
const (
	ReasonNotCertificate    = "not_a_certificate"
	ReasonNotUserCert       = "not_a_user_certificate"
	ReasonUntrustedCA       = "untrusted_ca"
	ReasonRevoked           = "revoked"
	ReasonCriticalOption    = "unsupported_critical_option"
	ReasonNotYetValid       = "not_yet_valid"
	ReasonExpired           = "expired"
	ReasonSourceAddress     = "source_address"
	ReasonNoTarget          = "no_target_in_user"
	ReasonUnknownTarget     = "unknown_target"
	ReasonPrincipal         = "principal_not_in_certificate"
	ReasonCertificateFailed = "certificate_check_failed"
	ReasonUnknownSerial     = "serial_not_issued"
	ReasonKeyMismatch       = "certificate_not_as_issued"
	ReasonKeyNotProved      = "key_not_proved"
	ReasonNotFIPS           = "not_fips_approved"
	// ReasonTooManyKeys: the connection offered more distinct keys than
	// max_auth_tries, and the bastion closed it.
	ReasonTooManyKeys = "max_auth_tries"
	// ReasonSummary is a summary event: the refused connections of one
	// address (or of the others) past the journal's budget, counted.
	ReasonSummary = "summary"
	// ReasonTooManyConnections (ssh.connection_refused): the address
	// already has max_connections_per_address open.
	ReasonTooManyConnections = "too_many_connections"
)

// Reasons of refused requests and channels (ssh.request_refused,
// ssh.channel_refused) and of refused logins that policy decides.
const (
	// ReasonNotPermitted refuses a login to a target no rule lets the
	// identity reach. The client is told no more than for a target that
	// does not exist.
	ReasonNotPermitted = "target_not_permitted"
	// ReasonPolicyDenied refuses a request (shell, exec, sftp, a
	// forward) that policy denies.
	ReasonPolicyDenied = "policy_denied"
	// ReasonNotTargetName: a direct-tcpip channel to a host that is not
	// a configured target name. Journaled for unknown and forbidden
	// targets alike; the client reads the same answer for both.
	ReasonNotTargetName = "not_a_target_name"
	// ReasonBadChannelData: a direct-tcpip channel whose request does not
	// parse.
	ReasonBadChannelData = "malformed_channel_request"
	// ReasonJumpCertificate: the inner connection of ssh -J authenticated
	// with another certificate than the outer one.
	ReasonJumpCertificate = "jump_certificate_not_outer"
	// ReasonPortForwarding: a direct-tcpip channel inside the inner
	// connection of ssh -J (port forwarding is not allowed).
	ReasonPortForwarding = "port_forwarding_not_allowed"
	// ReasonExecRefused and ReasonExecNotSplit refuse an exec request to
	// a command target.
	ReasonExecRefused  = "exec_refused"
	ReasonExecNotSplit = "exec_not_split"
	// ReasonForwardCommandTarget and ReasonForwardNotPermitted refuse a
	// port forward.
	ReasonForwardCommandTarget = "forward_to_command_target"
	ReasonForwardNotPermitted  = "forward_not_in_certificate"
)

// How a session ended: the "reason" attribute of its end leaf.
const (
	// EndExited: the command or shell exited (its status is in the
	// leaf); EndNoExitStatus: the target closed the session without
	// one.
	EndExited       = "exited"
	EndNoExitStatus = "no-exit-status"
	// EndStopped: the recording was stopped (its context canceled)
	// before the session ended by itself; EndError: the session failed.
	EndStopped = "stopped"
	EndError   = "error"
	// EndAbandoned: the writer that recorded the session stopped
	// without ending it (a crash); the next writer to open the journal
	// ends it so.
	EndAbandoned = "abandoned"
	// EndClosed: a port forward's channel was closed.
	EndClosed = "closed"
	// The bastion ended a live session: an operator killed it, its
	// certificate expired or was revoked, it was idle too long or ran
	// past its longest duration, its grant ended, or the server shut
	// down.
	EndKilled      = "killed"
	EndExpired     = "certificate-expired"
	EndRevoked     = "revoked"
	EndIdle        = "idle-timeout"
	EndMaxDuration = "max-duration"
	EndGrant       = "grant-ended"
	EndShutdown    = "shutdown"
	// EndRecordingFailed ends a session whose recording failed: its end
	// cannot be journaled, only counted in the metrics.
	EndRecordingFailed = "recording-failed"
)

// Why the server stopped: the "reason" of a serve.stopped event.
const (
	StopRequested = "requested"
	StopError     = "error"
)
