package bastion

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/termtext"
)

// ViaAPI is the via attribute of a journal.accessed or evidence.generated
// leaf serve wrote for a reader who asked through its HTTPS API (POST
// /v1/reads): the reader is the identity its OIDC token proves, never an
// OS account.
const ViaAPI = "api"

// ViaConsole is the via attribute of a journal.accessed or
// evidence.generated leaf serve wrote for a reader of its web console:
// the reader is the identity the console's sign-in proved.
const ViaConsole = "console"

// recordReadAPI journals a read asked through the HTTPS API (POST
// /v1/reads) in this instance's log: the reads of a journal in a
// database, which has no access socket beside it, and which every
// instance of a cluster and every reader on any machine reach. Only the
// policy's auditors and operators may read; anyone else is refused, and
// nothing is journaled (the API's log says so).
func (s *Server) recordReadAPI(ctx context.Context, who *policy.Identity, addr netip.Addr, req *certauth.ReadRequest) (*certauth.ReadResponse, error) {
	return s.recordReadVia(ctx, ViaAPI, who, addr, req)
}

// recordReadVia is recordReadAPI for a read asked through via (ViaAPI,
// ViaConsole): the leaf is the same, and its via says which.
func (s *Server) recordReadVia(ctx context.Context, via string, who *policy.Identity, addr netip.Addr, req *certauth.ReadRequest) (*certauth.ReadResponse, error) {
	event := req.Event
	if event == "" {
		event = recorder.EventJournalAccessed
	}
	var attrs recorder.Attrs
	var err error
	switch event {
	case recorder.EventJournalAccessed:
		if !slices.Contains(AccessActions, req.Action) {
			return nil, refuseRead(http.StatusBadRequest, events.ReasonRequestMalformed, "action %q is not one of %s", printable(req.Action), strings.Join(AccessActions, ", "))
		}
		attrs, err = readAttrs(req.Attrs, accessAttrs)
	case recorder.EventEvidenceGenerated:
		if req.Action != "" {
			return nil, refuseRead(http.StatusBadRequest, events.ReasonRequestMalformed, "a report (evidence.generated) takes no action")
		}
		attrs, err = readAttrs(req.Attrs, evidenceAttrs)
		for _, k := range []string{"sha256.html", "sha256.json"} {
			if err == nil && !recorder.IsSHA256Hex(req.Attrs[k]) {
				err = fmt.Errorf("%s must be the file's SHA-256 in lowercase hex (64 digits)", k)
			}
		}
	default:
		return nil, refuseRead(http.StatusBadRequest, events.ReasonRequestMalformed, "event %q is not %s or %s", printable(event), recorder.EventJournalAccessed, recorder.EventEvidenceGenerated)
	}
	if err != nil {
		return nil, refuseRead(http.StatusBadRequest, events.ReasonRequestMalformed, "%s", strings.TrimPrefix(err.Error(), "bad request: "))
	}
	pol := s.Policy()
	c := &caller{says: capText(termtext.OneLine(req.User), maxSays), verified: VerifiedToken, identity: who.String(), issuer: who.Issuer, id: who}
	roles := c.roles(pol)
	if roles == "" {
		return nil, refuseRead(http.StatusForbidden, events.ReasonNotReader,
			"%s is not one of this bastion's auditors or operators (the policy's \"auditors\" and \"operators\"): only they may read its journal", who.String())
	}
	host, _ := os.Hostname()
	maps.Copy(attrs, c.whoAttrs(pol, host))
	attrs["via"] = via
	if addr.IsValid() {
		attrs["client.address"] = addr.String()
	}
	s.textMasker().Fields(attrs, readerText...)
	if event == recorder.EventJournalAccessed {
		attrs["action"] = req.Action
	}
	// The key before the leaf: a report's leaf without its note helps
	// nobody, and the answer names the log the key signs.
	key, err := certauth.LoadJournalKey(s.opts.Home)
	if err != nil {
		return nil, err
	}
	idx, err := s.journal.AppendEvent(ctx, event, attrs)
	if err != nil {
		return nil, err
	}
	out := &certauth.ReadResponse{Log: key.Signer.Name(), Leaf: idx, Identity: c.identity, Roles: roles}
	if event == recorder.EventEvidenceGenerated {
		msg, err := recorder.SignEvidenceLeaf(key, idx, attrs)
		if err != nil {
			return nil, err
		}
		out.Note = string(msg)
		s.log.Info("examiner's report recorded", "by", c.identity, "via", via, "leaf", idx)
	} else {
		s.log.Info("journal read recorded", "action", req.Action, "by", c.identity, "via", via, "leaf", idx)
	}
	return out, nil
}

func refuseRead(status int, reason, format string, args ...any) error {
	return &certauth.Refusal{Status: status, Reason: reason, Msg: fmt.Sprintf(format, args...)}
}
