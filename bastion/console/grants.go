package console

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// The grants inbox: the requests the viewer may see, as the API's GET
// /v1/grants shows them to the same identity (grants.GrantFilter
// VisibleTo), with what each would allow; approvers approve or deny
// through the same store and rules as the API's decisions.

// Bounds of the inbox's list of grants already decided.
const (
	// RecentDecided is how far back the inbox lists decided grants.
	RecentDecided = 24 * time.Hour
	// MaxDecided is how many of them it lists at most, newest first.
	MaxDecided = 50
)

func (c *Console) grantRoutes(everyone []string) {
	c.handle("GET "+Path+"/grants", everyone, c.grantsPage)
	c.handle("GET "+Path+"/grants.json", everyone, c.grantsJSON)
	for _, action := range []string{"approve", "deny"} {
		c.handle("POST "+Path+"/grants/{id}/"+action, []string{RoleApprover}, func(w http.ResponseWriter, r *http.Request, v *viewer) {
			c.decideGrant(w, r, v, action)
		})
	}
	c.handle("POST "+Path+"/grants/{id}/revoke", []string{RoleOperator, RoleApprover}, c.revokeGrant)
}

// A GrantRevokeRequest is an operator's revocation of a grant through the
// console: what [Options.RevokeGrant] is given.
type GrantRevokeRequest struct {
	// ID is the grant's; Comment is recorded with the revocation.
	ID, Comment string
	// Who is the signed-in person, Session the public reference of their
	// console session, Client the address the request came from.
	Who     *policy.Identity
	Session string
	Client  netip.Addr
}

// grantsData is the grants page's, and grants.json's, content.
type grantsData struct {
	// Enabled is false when the bastion keeps no grants.
	Enabled bool `json:"enabled"`
	// Approver says the viewer may decide (forms are shown).
	Approver bool `json:"approver"`
	// Revoker says the viewer may revoke some grants: the decided
	// table has a column for the form.
	Revoker bool       `json:"revoker"`
	Pending []grantRow `json:"pending"`
	Decided []grantRow `json:"decided"`
	Now     string     `json:"now"`
	// MaxComment bounds a decision's comment, in bytes.
	MaxComment int `json:"max_comment"`
}

// grantRow is one grant as the inbox shows it. Every string a client
// chose is shown as text (termtext.Line in the template, textContent in
// the script).
type grantRow struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	Identity  string `json:"identity"`
	Sponsor   string `json:"sponsor,omitempty"`
	Reason    string `json:"reason"`
	Ticket    string `json:"ticket,omitempty"`
	Requested string `json:"requested"`
	// What it would allow.
	Target   string `json:"target"`
	Login    string `json:"login"`
	Command  string `json:"command,omitempty"`
	Duration string `json:"duration"`
	Asked    string `json:"asked"`
	Role     string `json:"role"`
	// Rule is the role's approval rule: how many approvals from whom.
	Rule string `json:"rule"`
	// Approvals are those given so far, "BY at TIME: COMMENT".
	Approvals    []string `json:"approvals"`
	PendingUntil string   `json:"pending_until,omitempty"`
	// Decided is when it was last decided (approved, denied, activated,
	// expired, ended, revoked), with by whom and their comment.
	Decided   string `json:"decided,omitempty"`
	DecidedBy string `json:"decided_by,omitempty"`
	Comment   string `json:"comment,omitempty"`
	Window    string `json:"window,omitempty"`
	// Own says the viewer asked for it: they may not decide it.
	Own bool `json:"own"`
	// Decide says the viewer is shown the forms to approve or deny it.
	Decide bool `json:"decide"`
	// Revoke says the viewer is shown the form to end it before its time
	// (an active grant: any for an operator; for an approver, one they
	// may approve or asked for themselves).
	Revoke bool `json:"revoke"`
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// decidedAt is when g was last decided on.
func decidedAt(g *grants.Grant) time.Time {
	t := g.ClosedAt
	if g.Start.After(t) {
		t = g.Start
	}
	for _, a := range g.Approvals {
		if a.At.After(t) {
			t = a.At
		}
	}
	return t
}

// grantsView is what the viewer sees of the grants now.
func (c *Console) grantsView(v *viewer) grantsData {
	now := c.o.Now()
	d := grantsData{Enabled: c.o.Grants != nil, Approver: v.has(RoleApprover), Revoker: v.has(RoleApprover, RoleOperator), Now: fmtTime(now), MaxComment: grants.MaxGrantComment,
		Pending: []grantRow{}, Decided: []grantRow{}}
	if c.o.Grants == nil {
		return d
	}
	var decided []grants.Grant
	for _, g := range c.o.Grants.List(grants.GrantFilter{VisibleTo: v.id}) {
		if g.State == grants.GrantPending {
			d.Pending = append(d.Pending, c.grantRow(v, &g))
			continue
		}
		if now.Sub(decidedAt(&g)) <= RecentDecided {
			decided = append(decided, g)
		}
	}
	slices.SortStableFunc(decided, func(a, b grants.Grant) int { return decidedAt(&b).Compare(decidedAt(&a)) })
	for i := range decided[:min(len(decided), MaxDecided)] {
		d.Decided = append(d.Decided, c.grantRow(v, &decided[i]))
	}
	return d
}

func (c *Console) grantRow(v *viewer, g *grants.Grant) grantRow {
	row := grantRow{
		ID: g.ID, State: string(g.State), Identity: g.Identity, Sponsor: g.Sponsor, Reason: g.Reason, Ticket: g.Ticket,
		Requested: fmtTime(g.RequestedAt), Target: g.Target, Login: g.Login, Command: g.Command,
		Duration: time.Duration(g.Duration).String(), Asked: time.Duration(g.AskedDuration).String(), Role: g.Role,
		Rule:      strconv.Itoa(g.ApprovalsNeeded) + " approval(s) from " + strings.Join(g.Approvers, ", "),
		Approvals: []string{}, Own: g.Identity == v.who,
	}
	for _, a := range g.Approvals {
		s := a.By + " at " + fmtTime(a.At)
		if a.Comment != "" {
			s += ": " + a.Comment
		}
		row.Approvals = append(row.Approvals, s)
	}
	if g.State == grants.GrantPending {
		row.PendingUntil = fmtTime(g.PendingUntil)
		row.Decide = v.has(RoleApprover) && !row.Own
		return row
	}
	row.Decided, row.DecidedBy, row.Comment = fmtTime(decidedAt(g)), g.ClosedBy, g.Comment
	if row.DecidedBy == "" && len(g.Approvals) > 0 {
		last := g.Approvals[len(g.Approvals)-1]
		row.DecidedBy, row.Comment = last.By, last.Comment
	}
	if !g.Start.IsZero() {
		row.Window = fmtTime(g.Start) + " to " + fmtTime(g.End)
	}
	row.Revoke = g.State == grants.GrantActive && (v.has(RoleOperator) || row.Own || c.mayApprove(v, g))
	return row
}

// mayApprove says whether the policy in force lets v approve g's role
// for g's requester: who, besides the requester and operators, may
// revoke it.
func (c *Console) mayApprove(v *viewer, g *grants.Grant) bool {
	may, _ := c.o.Policy().MayApprove(g.Role, g.Identity, v.id)
	return may
}

// grantsPage shows the inbox.
func (c *Console) grantsPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	c.renderGrants(w, http.StatusOK, v, "", "")
}

func (c *Console) renderGrants(w http.ResponseWriter, code int, v *viewer, problem, notice string) {
	d := c.grantsView(v)
	if !d.Enabled && problem == "" {
		problem = "This bastion keeps no just-in-time grants."
	}
	c.render(w, code, "grants", "Grants", v.frame(pageData{
		Problem: problem, Notice: notice, Data: d, Scripts: []string{Path + "/static/grants.js"},
	}, Path+"/grants"))
}

// grantsJSON is the inbox's content for its script, which refreshes the
// page with it.
func (c *Console) grantsJSON(w http.ResponseWriter, r *http.Request, v *viewer) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(c.grantsView(v))
}

// decideGrant approves or denies a grant for v through the grants store,
// as the API's POST /v1/grants/{id}/approve and deny do: the same rules
// (never one's own, an approver the policy names, independent of the
// requester's sponsor where the role says so), the same journal leaf,
// naming v, with via "console" and the console session.
func (c *Console) decideGrant(w http.ResponseWriter, r *http.Request, v *viewer, action string) {
	if c.o.Grants == nil {
		c.renderGrants(w, http.StatusNotFound, v, "This bastion keeps no just-in-time grants.", "")
		return
	}
	id := r.PathValue("id")
	d := grants.GrantDecision{
		ID: id, By: v.id, Comment: r.PostFormValue("comment"), ClientAddress: clientIP(r),
		Via: recorder.Attrs{"via": "console", "console.session": v.ref},
	}
	var g grants.Grant
	var err error
	if action == "approve" {
		g, err = c.o.Grants.Approve(r.Context(), d)
	} else {
		g, err = c.o.Grants.Deny(r.Context(), d)
	}
	if err != nil {
		code, reason := certauth.GrantStatus(err)
		msg := err.Error()
		if code == http.StatusInternalServerError {
			c.o.Logger.Error("console grant decision", "grant", id, "action", action, "error", err)
			msg = "internal error: the bastion's log says why"
		}
		c.renderGrants(w, code, v, "Refused ("+reason+"): "+msg, "")
		return
	}
	c.o.Logger.Info("console grant decision", "grant", g.ID, "action", action, "by", v.who, "state", g.State, "session", v.ref)
	notice := "You denied grant " + g.ID + "."
	if action == "approve" {
		notice = "You approved grant " + g.ID + ": it is " + string(g.State) + "."
	}
	c.renderGrants(w, http.StatusOK, v, "", notice)
}

// revokeGrant ends an active grant before its time for v, with a comment.
// An operator revokes any grant, as "bastion grants revoke --operator"
// does through the admin socket (the same leaf, naming them with
// operator.verified = console); an approver revokes as the API's POST
// /v1/grants/{id}/revoke lets them (a grant they may approve, or their
// own), through the grants store, with via "console". Live sessions under
// the grant end at once, as with the CLI.
func (c *Console) revokeGrant(w http.ResponseWriter, r *http.Request, v *viewer) {
	if c.o.Grants == nil {
		c.renderGrants(w, http.StatusNotFound, v, "This bastion keeps no just-in-time grants.", "")
		return
	}
	id, comment := r.PathValue("id"), r.PostFormValue("comment")
	// The console ends active grants only: a pending request is denied.
	// (Asked of a grant the person may not see, the store answers, as for
	// one that does not exist.)
	if cur, ok := c.o.Grants.Get(id); ok && cur.State != grants.GrantActive && (v.has(RoleOperator) || cur.Identity == v.who || c.mayApprove(v, &cur)) {
		c.renderGrants(w, http.StatusConflict, v, "Refused ("+events.ReasonGrantState+"): grant "+cur.ID+" is "+string(cur.State)+": the console revokes active grants (a pending request is denied).", "")
		return
	}
	var g grants.Grant
	var err error
	if v.has(RoleOperator) {
		g, err = c.o.RevokeGrant(r.Context(), GrantRevokeRequest{ID: id, Comment: comment, Who: v.id, Session: v.ref, Client: clientIP(r)})
	} else {
		g, err = c.o.Grants.Revoke(r.Context(), grants.GrantDecision{
			ID: id, By: v.id, Comment: comment, ClientAddress: clientIP(r),
			Via: recorder.Attrs{"via": "console", "console.session": v.ref},
		})
	}
	if err != nil {
		code, reason := certauth.GrantStatus(err)
		msg := err.Error()
		if code == http.StatusInternalServerError {
			c.o.Logger.Error("console grant revocation", "grant", id, "error", err)
			msg = "internal error: the bastion's log says why"
		}
		c.renderGrants(w, code, v, "Refused ("+reason+"): "+msg, "")
		return
	}
	c.o.Logger.Info("console grant revocation", "grant", g.ID, "by", v.who, "session", v.ref)
	c.renderGrants(w, http.StatusOK, v, "", "You revoked grant "+g.ID+": it is "+string(g.State)+"; sessions under it were ended.")
}
