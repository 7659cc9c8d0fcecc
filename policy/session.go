package policy

import (
	"net/netip"
	"time"
)

// Access says how a role's grants are held.
const (
	// AccessStanding roles grant whenever their identities match.
	AccessStanding = "standing"
	// AccessGrant roles grant only under an active just-in-time grant.
	AccessGrant = "grant"
)

// Action is what a session asks to do on a target.
type Action string

// Actions a SessionRequest may ask about.
const (
	// ActionConnect asks whether the identity may reach the target as the
	// login at all (by any role, standing or under an active grant): the
	// front door asks at authentication, so that a target the identity
	// may not reach looks like one that does not exist.
	ActionConnect Action = "connect"
	// ActionShell is an interactive shell (no command).
	ActionShell Action = "shell"
	// ActionExec runs SessionRequest.Command.
	ActionExec Action = "exec"
	// ActionFileTransfer is sftp, or scp run as an exec command.
	ActionFileTransfer Action = "file-transfer"
	// ActionForward opens a port forward to SessionRequest.Forward.
	ActionForward Action = "forward"
)

// Grant is an active just-in-time grant, as the grant store hands it to
// decisions: Identity may reach Target as Login, under Role, from Start
// until End, for Command only if Command is set.
type Grant struct {
	ID string
	// Identity is the grantee's Identity.String() ("subject@provider").
	Identity string
	Role     string
	Target   string
	Login    string
	// Command, when set, is the only exec command the grant allows
	// (compared as parsed argv).
	Command    string
	Start, End time.Time
}

// SessionRequest is everything a session decision depends on.
type SessionRequest struct {
	Identity *Identity
	Target   string
	Login    string
	Time     time.Time
	Action   Action
	// Command is the exec request's command, exactly as sent.
	Command string
	// PTY says a PTY is, or will be, attached.
	PTY bool
	// Forward is a forward's destination, "host:port".
	Forward string
	// ClientAddress is the client's address (roles may pin addresses).
	ClientAddress netip.Addr
	// Grants are the identity's active grants; a grant-only role allows
	// only through one of them.
	Grants []Grant
}

// Decision is a session decision: allow or deny, the rule that decided,
// and the limits the session runs under.
type Decision struct {
	Allow bool
	// Rule names what decided: "role:NAME", "role:NAME deny:PATTERN", or
	// "default" when no rule applies (default deny).
	Rule string
	// Grant is the ID of the grant that allowed, if any.
	Grant string
	// Reason is a sentence for logs and the client: why it was denied.
	Reason string
	Limits Limits
}

// Limits bound an allowed session.
type Limits struct {
	// Role is the role that allowed.
	Role string
	// MaxSession and IdleTimeout are the role's; zero means the front
	// door's defaults.
	MaxSession  time.Duration
	IdleTimeout time.Duration
	// NotAfter is the end of the grant the session runs under (zero for
	// standing access): the session ends then.
	NotAfter time.Time
	// PTY, Shell and FileTransfer are what the role allows besides exec.
	PTY          bool
	Shell        bool
	FileTransfer bool
	// Forward lists the "host:port" patterns port forwards may reach.
	Forward []string
	// Masking names the masking profile for the target's output.
	Masking string
	// RedactPasswordInput says what is typed at a password prompt is
	// recorded as a redaction marker.
	RedactPasswordInput bool
}

// GrantAsk is a just-in-time grant request, before any approval.
type GrantAsk struct {
	Identity *Identity
	Target   string
	Login    string
	Command  string
	Duration time.Duration
	Time     time.Time
}

// GrantRule is what policy says of a GrantAsk: which grant-only role it
// would be under, how long it may last, and who must approve it.
type GrantRule struct {
	Allow  bool
	Role   string
	Reason string
	// Duration is the asked-for duration capped by the role's maximum.
	Duration time.Duration
	// Approvals is how many distinct approvers are needed.
	Approvals int
	// Approvers names the identity matchers whose members may approve.
	Approvers []string
	// Sponsor is the requester's sponsor as the grant records it: the
	// one its token names, else the sponsor attribute of the role, else
	// [Policy.SponsorOf]'s; empty for an identity acting for itself.
	Sponsor string
}
