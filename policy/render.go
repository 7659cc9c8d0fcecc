package policy

import (
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/bastionhq/bastion/policy/mask"
)

// renderHCL writes a policy built from values in the policy language,
// for [Policy.Text]: what Decode would read back as the same policy. Only
// what is set is written (access always), in the order docs/policy.md
// lists the attributes; textMasking is written when it is not the
// default.
func renderHCL(identities []IdentityMatcher, roles []Role, profiles map[string]mask.Profile, textMasking string) string {
	f := hclwrite.NewEmptyFile()
	body := f.Body()
	sep := func() {
		if len(body.Attributes()) > 0 || len(body.Blocks()) > 0 {
			body.AppendNewline()
		}
	}
	if textMasking != "" && textMasking != DefaultTextMasking {
		body.SetAttributeValue("text_masking", cty.StringVal(textMasking))
	}
	for _, name := range sortedKeys(profiles) {
		sep()
		mp := profiles[name]
		b := body.AppendNewBlock("masking_profile", []string{name}).Body()
		setStrings(b, "detectors", mp.Detectors)
		if mp.Keep != 0 {
			b.SetAttributeValue("keep", cty.NumberIntVal(int64(mp.Keep)))
		}
		for _, r := range mp.Custom {
			cb := b.AppendNewBlock("custom", []string{r.Name}).Body()
			cb.SetAttributeValue("pattern", cty.StringVal(r.Pattern))
			if r.Keep != 0 {
				cb.SetAttributeValue("keep", cty.NumberIntVal(int64(r.Keep)))
			}
		}
	}
	for i := range identities {
		sep()
		writeMatch(body.AppendNewBlock("identity", []string{identities[i].Name}).Body(), &identities[i].Match)
	}
	for i := range roles {
		sep()
		writeRole(body, &roles[i])
	}
	return string(f.Bytes())
}

func writeRole(body *hclwrite.Body, r *Role) {
	b := body.AppendNewBlock("role", []string{r.Name}).Body()
	setStrings(b, "identities", r.Identities)
	if !r.Match.empty() {
		writeMatch(b.AppendNewBlock("match", nil).Body(), &r.Match)
	}
	setStrings(b, "targets", r.Targets)
	setStrings(b, "logins", r.Logins)
	access := r.Access
	if access == "" {
		access = AccessStanding
	}
	b.SetAttributeValue("access", cty.StringVal(access))
	setDuration(b, "max_ttl", r.MaxTTL.String(), r.MaxTTL != 0)
	if r.Permit != nil {
		b.SetAttributeValue("permit", stringList(r.Permit))
	}
	setStrings(b, "source_addresses", r.SourceAddresses)
	if r.Sponsor != "" {
		b.SetAttributeValue("sponsor", cty.StringVal(r.Sponsor))
	}
	for _, f := range []struct {
		name string
		on   bool
	}{{"pty", r.PTY}, {"shell", r.Shell}, {"file_transfer", r.FileTransfer}} {
		if f.on {
			b.SetAttributeValue(f.name, cty.True)
		}
	}
	setStrings(b, "port_forwarding", r.PortForwarding)
	setDuration(b, "max_session", r.MaxSession.String(), r.MaxSession != 0)
	setDuration(b, "idle_timeout", r.IdleTimeout.String(), r.IdleTimeout != 0)
	if r.Masking != "" {
		b.SetAttributeValue("masking", cty.StringVal(r.Masking))
	}
	if r.RedactPasswordInput {
		b.SetAttributeValue("redact_password_input", cty.True)
	}
	if c := r.Commands; c != nil {
		cb := b.AppendNewBlock("commands", nil).Body()
		setStrings(cb, "allow", c.Allow)
		setStrings(cb, "deny", c.Deny)
	}
	if a := r.Approval; a != nil {
		ab := b.AppendNewBlock("approval", nil).Body()
		ab.SetAttributeValue("approvers", stringList(a.Approvers))
		ab.SetAttributeValue("approvals", cty.NumberIntVal(int64(a.approvals())))
		ab.SetAttributeValue("max_duration", cty.StringVal(a.maxDuration().String()))
		if a.ExcludeSponsor {
			ab.SetAttributeValue("exclude_sponsor", cty.True)
		}
	}
}

func writeMatch(b *hclwrite.Body, m *Match) {
	setStrings(b, "providers", m.Providers)
	setStrings(b, "subjects", m.Subjects)
	setStrings(b, "sponsors", m.Sponsors)
	if m.Claims != nil {
		claims := map[string]cty.Value{}
		for name, pats := range m.Claims {
			claims[name] = stringList(pats)
		}
		if len(claims) == 0 {
			b.SetAttributeValue("claims", cty.MapValEmpty(cty.List(cty.String)))
		} else {
			b.SetAttributeValue("claims", cty.ObjectVal(claims))
		}
	}
}

// setStrings writes a list attribute when it has items.
func setStrings(b *hclwrite.Body, name string, s []string) {
	if len(s) > 0 {
		b.SetAttributeValue(name, stringList(s))
	}
}

func setDuration(b *hclwrite.Body, name, d string, set bool) {
	if set {
		b.SetAttributeValue(name, cty.StringVal(d))
	}
}

func stringList(s []string) cty.Value {
	if len(s) == 0 {
		return cty.ListValEmpty(cty.String)
	}
	vals := make([]cty.Value, len(s))
	for i, v := range s {
		vals[i] = cty.StringVal(v)
	}
	return cty.TupleVal(vals)
}
