package grants

import (
	"fmt"
	"strings"
	"time"

	"github.com/bastionhq/bastion/recorder/events"
)

// WebhookMessage is the JSON body posted to the grants webhook for each
// request and decision. Text makes it a Slack-compatible incoming-webhook
// message; Event and Grant are for programs.
type WebhookMessage struct {
	Text string `json:"text"`
	// Event is the journal event: grant.requested, grant.approved…
	Event string `json:"event"`
	Grant Grant  `json:"grant"`
	// By and Comment are the decider's, for approvals, denials and
	// revocations.
	By      string `json:"by,omitempty"`
	Comment string `json:"comment,omitempty"`
}

// webhookText is the message's one line for people.
func webhookText(event string, g *Grant, by, comment string) string {
	var b strings.Builder
	access := fmt.Sprintf("%s@%s", g.Login, g.Target)
	if g.Command != "" {
		access += fmt.Sprintf(" (command %q)", truncate(g.Command, 200))
	}
	switch event {
	case events.GrantRequested:
		return fmt.Sprintf("%s requests %s for %s: %q%s — %s needs %d approval(s) before %s",
			g.Identity, access, time.Duration(g.Duration), truncate(g.Reason, 300), ticketSuffix(g.Ticket), g.ID, g.ApprovalsNeeded, g.PendingUntil.UTC().Format(time.RFC3339))
	case events.GrantApproved:
		fmt.Fprintf(&b, "%s approved %s (%s for %s, %d of %d)", by, g.ID, access, g.Identity, len(g.Approvals), g.ApprovalsNeeded)
	case events.GrantDenied:
		fmt.Fprintf(&b, "%s denied %s (%s for %s)", by, g.ID, access, g.Identity)
	case events.GrantActivated:
		fmt.Fprintf(&b, "%s is active: %s may reach %s until %s", g.ID, g.Identity, access, g.End.UTC().Format(time.RFC3339))
	case events.GrantExpired:
		fmt.Fprintf(&b, "%s expired without a decision (%s for %s)", g.ID, access, g.Identity)
	case events.GrantEnded:
		fmt.Fprintf(&b, "%s ended: %s no longer reaches %s", g.ID, g.Identity, access)
	case events.GrantRevoked:
		fmt.Fprintf(&b, "%s revoked %s (%s for %s)", by, g.ID, access, g.Identity)
	default:
		fmt.Fprintf(&b, "%s: %s", event, g.ID)
	}
	if comment != "" {
		fmt.Fprintf(&b, ": %q", truncate(comment, 300))
	}
	return b.String()
}

func ticketSuffix(t string) string {
	if t == "" {
		return ""
	}
	return " [" + t + "]"
}
