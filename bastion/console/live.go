package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder/termtext"
)

// The live sessions page (GET /ui/), its JSON (GET /ui/live.json, which
// the page's script reads every LiveRefresh to keep the table current),
// and the kill of a live session by an operator (POST
// /ui/sessions/{id}/kill).

// LiveRefresh is how often the live sessions page's script asks for the
// list again.
const LiveRefresh = 2 * time.Second

// MaxKillReason bounds the reason a kill form may carry; the kill itself
// keeps at most 200 characters of it, on one line, masked.
const MaxKillReason = 1024

// A KillRequest is an operator's kill of a live session through the
// console: what [Options.Kill] is given.
type KillRequest struct {
	// ID is the journal session's ID.
	ID string
	// Reason is told to the session's client and recorded.
	Reason string
	// Who is the signed-in person, Session the public reference of their
	// console session, Client the address the request came from.
	Who     *policy.Identity
	Session string
	Client  netip.Addr
}

type liveData struct {
	Rows []liveRow `json:"rows"`
	Now  string    `json:"now"`
	// Follow and Kill say whether the viewer may follow sessions and kill
	// them: the actions each row offers.
	Follow bool `json:"follow"`
	Kill   bool `json:"kill"`
}

// A liveRow is one live session as the page and its JSON show it: every
// value chosen by a client is already rendered as text (termtext.Line),
// so that the script inserts it as it is, with textContent.
type liveRow struct {
	ID         string `json:"id"`
	Identity   string `json:"identity"`
	Target     string `json:"target"`
	Login      string `json:"login"`
	Client     string `json:"client"`
	Allowed    string `json:"allowed"`
	StartedISO string `json:"started"`
	Age        string `json:"age"`
	// Bytes is -1 for a session another member of a cluster records:
	// Member is that member's ID (0: this one).
	Bytes  int64  `json:"bytes"`
	Member uint16 `json:"member,omitempty"`
	// FollowURL and KillURL are the row's actions, "" when the viewer may
	// not take them.
	FollowURL string `json:"follow_url,omitempty"`
	KillURL   string `json:"kill_url,omitempty"`
}

// followers are the roles that may follow a live session's output: a
// read of the journal.
var followers = []string{RoleOperator, RoleAuditor}

// liveList is the live sessions as v may see them, oldest first.
func (c *Console) liveList(v *viewer) liveData {
	now := c.o.Now()
	list := c.o.Live()
	slices.SortFunc(list, func(a, b front.LiveSession) int { return a.Started.Compare(b.Started) })
	d := liveData{Rows: make([]liveRow, 0, len(list)), Follow: v.has(followers...), Kill: v.has(RoleOperator)}
	for _, l := range list {
		allowed := l.Rule
		if l.Grant != "" {
			allowed = strings.TrimSpace(allowed + " grant:" + l.Grant)
		}
		row := liveRow{
			ID: termtext.Line(l.ID), Identity: termtext.Line(l.Identity), Target: termtext.Line(l.Target),
			Login: termtext.Line(l.Login), Client: termtext.Line(l.Client), Allowed: termtext.Line(allowed),
			StartedISO: l.Started.UTC().Format(time.RFC3339), Age: now.Sub(l.Started).Truncate(time.Second).String(), Bytes: l.Bytes,
			Member: l.Member,
		}
		// The session IDs are the journal's UUIDs; anything else gets no
		// link.
		if isSessionID(l.ID) {
			// Another member's session is followed from its log when the
			// console can read it (a cluster's members can).
			if d.Follow && (l.Member == 0 || c.o.MemberLog != nil) {
				row.FollowURL = Path + "/sessions/" + l.ID + "/live"
			}
			if d.Kill {
				row.KillURL = Path + "/sessions/" + l.ID + "/kill"
			}
		}
		d.Rows = append(d.Rows, row)
	}
	d.Now = now.UTC().Format(time.RFC3339) + " (" + strconv.Itoa(len(d.Rows)) + " live)"
	return d
}

// live shows the live sessions.
func (c *Console) live(w http.ResponseWriter, r *http.Request, v *viewer) {
	c.renderLive(w, http.StatusOK, v, pageData{})
}

func (c *Console) renderLive(w http.ResponseWriter, code int, v *viewer, d pageData) {
	d.Data, d.Scripts = c.liveList(v), []string{Path + "/static/live.js"}
	c.render(w, code, "live", "Live sessions", v.frame(d, Path+"/"))
}

// liveJSON is the live sessions for the page's script.
func (c *Console) liveJSON(w http.ResponseWriter, r *http.Request, v *viewer) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(c.liveList(v))
}

// kill ends a live session, for an operator, through [Options.Kill]: the
// path of the CLI's "bastion sessions kill". Anyone else who holds a
// console role is refused there too, and the refusal is journaled as the
// admin socket's are.
func (c *Console) kill(w http.ResponseWriter, r *http.Request, v *viewer) {
	id := sessionID(r)
	if id == "" {
		c.renderLive(w, http.StatusBadRequest, v, pageData{Problem: "That is not a session ID."})
		return
	}
	reason := r.PostFormValue("reason")
	if len(reason) > MaxKillReason {
		c.renderLive(w, http.StatusBadRequest, v, pageData{Problem: "The reason is longer than " + strconv.Itoa(MaxKillReason) + " bytes; nothing was done."})
		return
	}
	// The kill runs to its end even if the browser goes away: its leaf
	// is the record of what was done.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	l, err := c.o.Kill(ctx, KillRequest{ID: id, Reason: reason, Who: v.id, Session: v.ref, Client: clientIP(r)})
	switch {
	case err == nil:
		c.o.Logger.Info("ssh session killed from the console", "session", id, "by", v.who, "console.session", v.ref)
		notice := "The session " + id + " was ended."
		if l.Identity != "" {
			notice = "The session " + id + " of " + l.Identity + " was ended."
		}
		c.renderLive(w, http.StatusOK, v, pageData{Notice: notice})
	case errors.Is(err, front.ErrNoLiveSession):
		c.renderLive(w, http.StatusNotFound, v, pageData{Problem: "No live session has the ID " + id + ": it may have ended already. Nothing was done."})
	case !v.has(RoleOperator):
		c.renderLive(w, http.StatusForbidden, v, pageData{Problem: "Refused: only the operators the policy names may kill a session (" + err.Error() + "). The refusal is journaled."})
	default:
		c.o.Logger.Warn("console kill", "session", id, "by", v.who, "error", err)
		c.renderLive(w, http.StatusConflict, v, pageData{Problem: "The session was not killed: " + err.Error()})
	}
}
