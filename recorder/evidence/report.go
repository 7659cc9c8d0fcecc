package evidence

import (
	"time"

	"github.com/bastionhq/bastion/recorder"
)

// Format names the report's JSON form; docs/evidence.schema.json is its
// schema.
const Format = "bastion-evidence-v2"

// Report is the examiner's report: what the journal says of one period,
// with the proof that the journal is whole. Its JSON form is
// evidence.json; [WriteHTML] renders it as evidence.html. Sections come
// in the order an examiner reads them. Every list is sorted by journal
// leaf index (or by name where it has none), so that one journal and one
// Now always give the same bytes.
type Report struct {
	Format      string    `json:"format"`
	GeneratedAt time.Time `json:"generated_at"`

	// Section 1: cover and integrity statement.
	Scope        Scope        `json:"scope"`
	Journal      JournalInfo  `json:"journal"`
	Checkpoint   Checkpoint   `json:"checkpoint"`
	Verification Verification `json:"verification"`
	// Anchor says what the verdict rests on; Banners are the warnings
	// the cover shows first.
	Anchor  Anchor   `json:"anchor"`
	Banners []Banner `json:"banners"`
	// VerifyCommand checks the journal independently of this report,
	// against the checkpoint written beside it (checkpoint.txt).
	VerifyCommand string `json:"verify_command"`

	// Section 2.
	Summary Summary `json:"summary"`
	// Section 3.
	Identities []Identity `json:"identities"`
	// Section 4.
	Grants         []Grant      `json:"grants"`
	StandingAccess []SessionRef `json:"standing_access"`
	// Section 5: the policy in force during the period, its roles, text
	// and changes, and who could reach what.
	LeastPrivilege LeastPrivilege `json:"least_privilege"`
	// Section 6.
	Sessions []Session `json:"sessions"`
	Refusals []Refusal `json:"refusals"`
	// Sample is the reproducible sample of sessions picked for detailed
	// review (--sample), nil when every session is detailed.
	Sample *Sample `json:"sample"`
	// OperatorActions (section 8) are the actions operators took through
	// the admin socket: kills, revocations, CA rotations.
	OperatorActions []OperatorAction `json:"operator_actions"`
	// Section 8 (section 7, the timeline, and 9, the review, are the
	// HTML's only).
	Custody Custody `json:"custody"`
	// Section 10.
	Controls []Control `json:"controls"`
}

// Scope is what the report covers.
type Scope struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Targets limits the report to these targets; empty means all.
	Targets []string `json:"targets"`
	// Identities limits it to these identities; empty means all.
	Identities []string `json:"identities"`
}

// Anchor says what the report's verdict rests on.
type Anchor struct {
	// Level is "green" when the journal is intact and proven consistent
	// with a checkpoint kept outside the bastion's host, "amber" when it
	// is intact but checked only against its own head (whoever controls
	// the host could have rolled it back or rewritten it whole, with
	// its key), "red" when it does not verify.
	Level string `json:"level"`
	// Basis is "witnesses" (the checkpoints the witnesses given
	// cosigned), "kept-checkpoint", "own-head" or "none". With both
	// witnesses and a kept checkpoint, What says which rests on which.
	Basis string `json:"basis"`
	What  string `json:"what"`
	// CheckpointSize is the size of the kept checkpoint, when given.
	CheckpointSize int64 `json:"checkpoint_size,omitempty"`
	// CheckpointFile is where it was read.
	CheckpointFile string `json:"checkpoint_file,omitempty"`
	// Witnesses is what the witnesses given with --witness cosigned,
	// nil without.
	Witnesses *WitnessAnchor `json:"witnesses,omitempty"`
}

// WitnessAnchor is what the witnesses the examiner gave cosigned, as
// verification found it.
type WitnessAnchor struct {
	// Threshold is how many of them must cosign a checkpoint.
	Threshold int                       `json:"threshold"`
	Witnesses []recorder.WitnessSummary `json:"witnesses"`
	// WitnessedSize is the largest published checkpoint that Threshold
	// of them cosigned (0: none); Cosignatures are theirs on it.
	WitnessedSize int64                      `json:"witnessed_size"`
	Cosignatures  []recorder.CosignatureInfo `json:"cosignatures"`
	// Needed is the size a checkpoint must reach to cover every record
	// of the period; CoversPeriod whether WitnessedSize does.
	Needed       int64 `json:"needed"`
	CoversPeriod bool  `json:"covers_period"`
	// CosignedAfterPeriod counts the cosignatures on the witnessed
	// checkpoint timestamped at or after the period's end: only those
	// show the witnesses held it once the period was over, which a copy
	// restored from before then cannot.
	CosignedAfterPeriod int `json:"cosigned_after_period"`
	// Live is true when a running server held the journal.
	Live bool `json:"live"`
}

// Anchor levels.
const (
	AnchorGreen = "green"
	AnchorAmber = "amber"
	AnchorRed   = "red"
)

// Banner is a warning the cover shows before anything else.
type Banner struct {
	Kind string `json:"kind"`
	What string `json:"what"`
}

// Sample is the sessions picked for detailed review: the Size sessions
// of the period with the smallest SHA-256 of "SEED:ID" (decimal seed,
// lower-case session ID), which anyone can recompute, and every session
// an exception names.
type Sample struct {
	Size       int      `json:"size"`
	Seed       int64    `json:"seed"`
	Method     string   `json:"method"`
	Sessions   []string `json:"sessions"`
	Exceptions []string `json:"exceptions"`
}

// OperatorAction is an action an operator took: a session killed, a
// certificate or grant revoked, a CA rotated.
type OperatorAction struct {
	Event  string    `json:"event"`
	Action string    `json:"action"`
	At     time.Time `json:"at"`
	Leaf   int64     `json:"leaf"`
	// Operator is the person, SUBJECT@PROVIDER, when one is named;
	// Verified how: "token" (an OpenID Connect token serve verified),
	// "account" (the OS account, mapped to the identity by serve's
	// configuration), "console" (signed in to the web console, by an ID
	// token serve verified) or "none" (only an OS account is known).
	Operator string `json:"operator"`
	Verified string `json:"verified"`
	// Issuer is the issuer of the operator's token, for "token" and
	// "console".
	Issuer string `json:"issuer,omitempty"`
	UID    string `json:"uid,omitempty"`
	User   string `json:"user,omitempty"`
	By     string `json:"by,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// JournalInfo names the journal and the key it was checked with.
type JournalInfo struct {
	Path   string `json:"path"`
	Origin string `json:"origin"`
	// Key is the journal's public key (a signed-note verifier key),
	// KeyFile where it was read, and KeyFromHome whether it is the
	// bastion home's own key rather than one given with --key.
	Key         string `json:"key"`
	KeyFile     string `json:"key_file"`
	KeyFromHome bool   `json:"key_from_home"`
}

// Checkpoint is the signed checkpoint that covers the period: the first
// one kept at or after the period's end, or the journal's head when none
// was kept since.
type Checkpoint struct {
	Size    int64     `json:"size"`
	Root    string    `json:"root"` // base64
	Created time.Time `json:"created"`
	// Why says how it was chosen: "first kept at or after the period's
	// end" or "the journal's head".
	Why  string `json:"why"`
	Note string `json:"note"`
}

// Verification is the result of the full verification "bastion verify"
// runs.
type Verification struct {
	Intact          bool      `json:"intact"`
	TreeSize        int64     `json:"tree_size"`
	Root            string    `json:"root"`
	Sessions        int       `json:"sessions"`
	SessionsChecked int       `json:"sessions_checked"`
	Frames          int64     `json:"frames"`
	PayloadBytes    int64     `json:"payload_bytes"`
	Events          int       `json:"events"`
	Checkpoints     int       `json:"checkpoints_valid"`
	Covered         int64     `json:"covered"`
	Uncovered       int64     `json:"uncovered"`
	Problems        []Problem `json:"problems"`
	// Output is the report "bastion verify" prints, word for word.
	Output string `json:"output"`
}

// Problem is one finding of verification.
type Problem struct {
	Leaf  int64  `json:"leaf"`
	Where string `json:"where"`
	What  string `json:"what"`
}

// Summary counts what the period holds and lists what an examiner must
// look at.
type Summary struct {
	Identities        int `json:"identities"`
	Agents            int `json:"agents"`
	Certificates      int `json:"certificates"`
	Grants            int `json:"grants"`
	Sessions          int `json:"sessions"`
	Commands          int `json:"commands"`
	Refusals          int `json:"refusals"`
	FailedAuth        int `json:"failed_authentications"`
	JournalAccesses   int `json:"journal_accesses"`
	StandingSessions  int `json:"standing_sessions"`
	CheckpointsInTime int `json:"checkpoints_in_period"`
	// Exceptions are findings against the controls; OpenItems are
	// things still in progress at the report's time.
	Exceptions []Finding `json:"exceptions"`
	OpenItems  []Finding `json:"open_items"`
}

// Finding is one exception or open item: its kind, a sentence, and the
// journal leaf that shows it (-1 when none does).
type Finding struct {
	Kind string `json:"kind"`
	What string `json:"what"`
	Leaf int64  `json:"leaf"`
}

// Finding kinds.
const (
	FindingNotIntact       = "journal-not-intact"
	FindingRefusal         = "refusals"
	FindingBrokenSession   = "broken-session"
	FindingUnterminated    = "unterminated-session"
	FindingAbandoned       = "abandoned-session"
	FindingPastGrant       = "session-past-grant-end"
	FindingCertPastGrant   = "certificate-past-grant-end"
	FindingStanding        = "standing-access"
	FindingUncleanStop     = "unclean-stop"
	FindingPolicyRefused   = "policy-refused"
	FindingSegregation     = "segregation-of-duties"
	FindingUnknownSponsor  = "unknown-sponsor"
	FindingDevProvider     = "dev-provider"
	FindingFuturePeriod    = "future-period"
	FindingUnverifiedOp    = "unverified-operator"
	FindingAnchor          = "anchor"
	FindingPendingGrant    = "pending-grant"
	FindingActiveGrant     = "active-grant"
	FindingLiveSession     = "live-session"
	FindingLiveCertificate = "live-certificate"
)

// Identity is one identity that held access in the period: a
// certificate valid during it, a grant active during it, or a session.
type Identity struct {
	Identity string `json:"identity"`
	// Kind is "agent" when the identity acts for a sponsor, "human"
	// otherwise (the policy's meaning of an identity without a sponsor).
	Kind     string   `json:"kind"`
	Provider string   `json:"provider"`
	Issuer   string   `json:"issuer"`
	Subject  string   `json:"subject"`
	Sponsors []string `json:"sponsors"`
	// TokenSubjects are the tokens' "sub" where it differs from the
	// subject: a delegation token, whose "sub" is the sponsor.
	TokenSubjects []string `json:"token_subjects"`
	Email         string   `json:"email,omitempty"`
	// Authentication says how the identity proved itself.
	Authentication string        `json:"authentication"`
	Certificates   []Certificate `json:"certificates"`
	Grants         []string      `json:"grants"`
	Sessions       int           `json:"sessions"`
}

// Certificate is one certificate issued to an identity.
type Certificate struct {
	Serial      uint64      `json:"serial"` // the index of its cert.issued leaf
	IssuedAt    time.Time   `json:"issued_at"`
	Principals  []string    `json:"principals"`
	ValidAfter  time.Time   `json:"valid_after"`
	ValidBefore time.Time   `json:"valid_before"`
	TTLSeconds  int64       `json:"ttl_seconds"`
	Grant       string      `json:"grant,omitempty"`
	Rule        string      `json:"rule,omitempty"`
	Ticket      string      `json:"ticket,omitempty"`
	Sponsor     string      `json:"sponsor,omitempty"`
	Key         string      `json:"key_fingerprint,omitempty"`
	Client      string      `json:"client_address,omitempty"`
	Revoked     *Revocation `json:"revoked,omitempty"`
}

// Revocation is the cert.revoked event that revoked a certificate.
type Revocation struct {
	At     time.Time `json:"at"`
	By     string    `json:"by,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Leaf   int64     `json:"leaf"`
}

// Grant is one just-in-time grant and its life.
type Grant struct {
	ID        string     `json:"id"`
	State     string     `json:"state"`
	Requester string     `json:"requester"`
	Sponsor   string     `json:"sponsor,omitempty"`
	Reason    string     `json:"reason"`
	Ticket    string     `json:"ticket,omitempty"`
	Role      string     `json:"role"`
	Target    string     `json:"target"`
	Login     string     `json:"login"`
	Command   string     `json:"command,omitempty"`
	Duration  string     `json:"duration"`
	Requested time.Time  `json:"requested_at"`
	Leaf      int64      `json:"leaf"` // its grant.requested leaf
	Needed    int        `json:"approvals_needed"`
	Approvals []Decision `json:"approvals"`
	Start     *time.Time `json:"start,omitempty"`
	End       *time.Time `json:"end,omitempty"`
	// Closed is how the grant ended: denied, expired (never approved in
	// time), ended (ran its course) or revoked, with the leaf that
	// records it. Nil while pending or active.
	Closed       *Decision `json:"closed,omitempty"`
	Sessions     []string  `json:"sessions"`
	Certificates []uint64  `json:"certificates"`
	// Scope says concretely what the grant allowed, from the role of
	// the policy in force when it was requested.
	Scope string `json:"scope"`
	// PolicyHash is the policy in force at the request.
	PolicyHash string `json:"policy_hash,omitempty"`
}

// Decision is a transition of a grant: an approval, or how it closed.
type Decision struct {
	Event string `json:"event"`
	By    string `json:"by,omitempty"`
	// BySponsor and ByEmail are the deciding identity's sponsor and
	// e-mail address, as its token said.
	BySponsor string    `json:"by_sponsor,omitempty"`
	ByEmail   string    `json:"by_email,omitempty"`
	Comment   string    `json:"comment,omitempty"`
	At        time.Time `json:"at"`
	Leaf      int64     `json:"leaf"`
}

// SessionRef names a session of section 6.
type SessionRef struct {
	ID       string `json:"id"`
	Identity string `json:"identity"`
	Target   string `json:"target"`
	Login    string `json:"login"`
	Rule     string `json:"rule"`
	Leaf     int64  `json:"leaf"`
}

// Session is one recorded session.
type Session struct {
	ID       string     `json:"id"`
	Kind     string     `json:"kind"` // ssh, record
	Request  string     `json:"request,omitempty"`
	Identity string     `json:"identity"`
	Serial   string     `json:"serial,omitempty"`
	Target   string     `json:"target"`
	Login    string     `json:"login"`
	Client   string     `json:"client,omitempty"`
	Route    string     `json:"route,omitempty"`
	Rule     string     `json:"rule,omitempty"`
	Grant    string     `json:"grant,omitempty"`
	GrantEnd *time.Time `json:"grant_end,omitempty"`
	Started  time.Time  `json:"started"`
	Ended    *time.Time `json:"ended,omitempty"`
	// StartLeaf and EndLeaf are the session's start and end leaves
	// (EndLeaf -1 while unterminated).
	StartLeaf int64 `json:"start_leaf"`
	EndLeaf   int64 `json:"end_leaf"`
	// EndReason and EndDetail are from the end leaf; ExitStatus and
	// ExitSignal from it too, when the command reported them.
	EndReason  string    `json:"end_reason,omitempty"`
	EndDetail  string    `json:"end_detail,omitempty"`
	ExitStatus string    `json:"exit_status,omitempty"`
	ExitSignal string    `json:"exit_signal,omitempty"`
	Commands   []Command `json:"commands"`
	// Masked counts masking events by detector; MaskedTotal sums them.
	Masked      map[string]int64 `json:"masked"`
	MaskedTotal int64            `json:"masked_total"`
	Frames      int64            `json:"frames"`
	InBytes     int64            `json:"in_bytes"`
	OutBytes    int64            `json:"out_bytes"`
	// Verified says the session's frames verified against the log;
	// Problem why not.
	Verified bool   `json:"verified"`
	Problem  string `json:"problem,omitempty"`
	// Detailed says the session is reviewed in detail: every session
	// without --sample, else those sampled and those an exception names.
	Detailed bool `json:"detailed"`
	// Bundle is the session's verifiable bundle beside the report
	// (bundles/ID.bundle), written for each detailed session.
	Bundle string `json:"bundle,omitempty"`
}

// Command is a command of a session: exactly as sent for an exec
// request, rebuilt from keystrokes when Reconstructed.
type Command struct {
	At            time.Time `json:"at"`
	Text          string    `json:"text"`
	Reconstructed bool      `json:"reconstructed"`
	Uncertain     bool      `json:"uncertain"`
}

// Refusal is an action the bastion or its CA refused, or an
// authentication that failed.
type Refusal struct {
	Event    string    `json:"event"`
	At       time.Time `json:"at"`
	Leaf     int64     `json:"leaf"`
	Identity string    `json:"identity,omitempty"`
	User     string    `json:"user,omitempty"`
	Target   string    `json:"target,omitempty"`
	Client   string    `json:"client,omitempty"`
	Reason   string    `json:"reason"`
	// What is the request refused: a request type, channel, command or
	// grant action.
	What   string `json:"what,omitempty"`
	Detail string `json:"detail,omitempty"`
	// FailedAuth marks a failed authentication (a refused SSH login or
	// a refused token).
	FailedAuth bool `json:"failed_authentication"`
	// Count is how many refusals the event stands for: 1, or, for a
	// summary of the refusals past the journal's budget (attribute
	// "refused"), how many it counts.
	Count int `json:"count"`
}

// Custody is the journal's own history in and around the period.
type Custody struct {
	// Checkpoints are the checkpoints kept during the period.
	Checkpoints []CheckpointRef `json:"checkpoints"`
	// Accesses are the journal.accessed events from the period's start
	// to the head: plays, exports and reports, this one included.
	Accesses []Access `json:"accesses"`
	// Serve lists serve.started and serve.stopped events in the period,
	// with the last one before it.
	Serve []ServeEvent `json:"serve"`
	// Policies lists policy.loaded and policy.refused events in the
	// period, with the last load before it (the policy in force at its
	// start).
	Policies []PolicyEvent `json:"policies"`
	// Gaps are unclean stops: a start without a stop before it.
	Gaps []Finding `json:"gaps"`
	// Retention is what the journal holds: its oldest record and size.
	Retention Retention `json:"retention"`
}

// Retention states what the journal keeps.
type Retention struct {
	// OldestRecord is the signed time of leaf 0; Leaves how many the
	// journal holds; JournalBytes the size of its files.
	OldestRecord time.Time `json:"oldest_record"`
	Leaves       int64     `json:"leaves"`
	JournalBytes int64     `json:"journal_bytes"`
	Policy       string    `json:"policy"`
}

// CheckpointRef is one kept checkpoint.
type CheckpointRef struct {
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
}

// Access is one journal.accessed event.
type Access struct {
	At     time.Time `json:"at"`
	Leaf   int64     `json:"leaf"`
	Action string    `json:"action"`
	// Via is "serve" when the running bastion recorded the read for
	// the reader (its user and uid are what the kernel said of the
	// reader's process), "reader" when the reader wrote it itself.
	Via string `json:"via,omitempty"`
	// Identity is the reader's OpenID Connect identity, when one was
	// given; Verified "token", "account" or "none", as for operators;
	// Role "auditor" and/or "operator" when the policy names it so.
	Identity string `json:"identity,omitempty"`
	Verified string `json:"verified,omitempty"`
	// Issuer is the issuer of the reader's token, for "token".
	Issuer  string `json:"issuer,omitempty"`
	Role    string `json:"role,omitempty"`
	PID     string `json:"pid,omitempty"`
	Session string `json:"session,omitempty"`
	Format  string `json:"format,omitempty"`
	User    string `json:"user,omitempty"`
	UID     string `json:"uid,omitempty"`
	Host    string `json:"host,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// ServeEvent is a serve.started or serve.stopped event.
type ServeEvent struct {
	Event  string    `json:"event"`
	At     time.Time `json:"at"`
	Leaf   int64     `json:"leaf"`
	Detail string    `json:"detail,omitempty"`
	// Unclean marks a start that no stop preceded.
	Unclean bool `json:"unclean"`
}

// PolicyEvent is a policy.loaded or policy.refused event.
type PolicyEvent struct {
	Event    string    `json:"event"`
	At       time.Time `json:"at"`
	Leaf     int64     `json:"leaf"`
	Trigger  string    `json:"trigger,omitempty"`
	Hash     string    `json:"hash,omitempty"`
	Previous string    `json:"previous,omitempty"`
	Source   string    `json:"source,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// Control maps one control to the sections that answer it.
type Control struct {
	Framework string   `json:"framework"`
	ID        string   `json:"id"`
	Title     string   `json:"title"`
	Sections  []string `json:"sections"`
	Answer    string   `json:"answer"`
}
