package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/bastionhq/bastion/policy/mask"
)

// Load reads a policy from an HCL file, or from every *.hcl file of a
// directory in name order, and checks it against opts. It returns the
// warnings, and an *Error listing every error (each at file:line:col) when
// the policy cannot be used.
//
// The policy's Hash is SHA-256 over its files in order, each as its base
// name and its bytes, both length-prefixed (8 bytes, big-endian), so that
// the journal can name exactly the policy in force; its [Policy.Text] is
// the files' text, each after a line "# file: NAME".
func Load(path string, opts Options) (*Policy, []Diagnostic, error) {
	files, err := policyFiles(path)
	if err != nil {
		return nil, nil, err
	}
	h := sha256.New()
	var bodies []hcl.Body
	var d diagnostics
	var text strings.Builder
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("read policy: %w", err)
		}
		writeLenPrefixed(h, []byte(filepath.Base(f)))
		writeLenPrefixed(h, src)
		writeFileText(&text, filepath.Base(f), src)
		file, hd := hclsyntax.ParseConfig(src, f, hcl.InitialPos)
		d.addHCL(hd, hcl.Range{Filename: f, Start: hcl.InitialPos, End: hcl.InitialPos})
		if file != nil {
			bodies = append(bodies, file.Body)
		}
	}
	if d.hasErrors() {
		return nil, d.warnings(), &Error{Diagnostics: d.errors()}
	}
	p, warnings, err := decode(hcl.MergeBodies(bodies), "sha256:"+hex.EncodeToString(h.Sum(nil)), opts, func(*hcl.BodyContent) string { return text.String() })
	return p, append(d.warnings(), warnings...), err
}

// writeFileText adds a file's text to a policy's Text: a line naming it,
// then its text, ending with a line break.
func writeFileText(b *strings.Builder, name string, src []byte) {
	if b.Len() > 0 {
		b.WriteString("\n")
	}
	b.WriteString("# file: " + name + "\n")
	b.Write(src)
	if len(src) > 0 && src[len(src)-1] != '\n' {
		b.WriteString("\n")
	}
}

// DecodeConfig reads the policy held in a configuration file: body is
// what is left of the file's body once the configuration's own blocks
// and attributes are taken (see [Decode]), src the file's bytes and path
// its name. The policy's Hash is the SHA-256 of src; its [Policy.Text] is
// a line "# file: NAME" followed by the policy's blocks and attributes
// as src writes them, and nothing else of the file.
func DecodeConfig(path string, src []byte, body hcl.Body, opts Options) (*Policy, []Diagnostic, error) {
	sum := sha256.Sum256(src)
	return decode(body, "sha256:"+hex.EncodeToString(sum[:]), opts, func(content *hcl.BodyContent) string {
		return configText(filepath.Base(path), src, content)
	})
}

// configText is the text of the policy's parts of a configuration file:
// every block and attribute of content, whole, in file order. A part
// whose place in src is unknown (a body not in the native syntax) makes
// it give up: the policy is then written from its values.
func configText(name string, src []byte, content *hcl.BodyContent) string {
	var parts []hcl.Range
	for _, a := range content.Attributes {
		parts = append(parts, a.Range)
	}
	for _, b := range content.Blocks {
		sb, ok := b.Body.(*hclsyntax.Body)
		if !ok {
			return ""
		}
		parts = append(parts, hcl.RangeBetween(b.TypeRange, sb.SrcRange))
	}
	slices.SortFunc(parts, func(a, b hcl.Range) int { return a.Start.Byte - b.Start.Byte })
	var text strings.Builder
	text.WriteString("# file: " + name + "\n")
	for i, r := range parts {
		if r.Start.Byte < 0 || r.End.Byte > len(src) || r.Start.Byte > r.End.Byte {
			return ""
		}
		if i > 0 {
			text.WriteString("\n")
		}
		text.Write(src[r.Start.Byte:r.End.Byte])
		text.WriteString("\n")
	}
	return text.String()
}

func writeLenPrefixed(h interface{ Write([]byte) (int, error) }, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// policyFiles is path itself, or the *.hcl files in it, in name order.
func policyFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path) // sorted by name
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".hcl") {
			files = append(files, filepath.Join(path, e.Name()))
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("read policy: no .hcl files in %s", path)
	}
	return files, nil
}

// The shape of the language.
var (
	policySchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "text_masking"}, {Name: "operators"}, {Name: "auditors"}},
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "identity", LabelNames: []string{"name"}},
			{Type: "role", LabelNames: []string{"name"}},
			{Type: "masking_profile", LabelNames: []string{"name"}},
		},
	}
	maskingSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "detectors"}, {Name: "keep"}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "custom", LabelNames: []string{"name"}}},
	}
	customSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "pattern", Required: true}, {Name: "keep"}}}
	matchAttrs   = []hcl.AttributeSchema{
		{Name: "providers"}, {Name: "subjects"}, {Name: "sponsors"}, {Name: "claims"},
	}
	identitySchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "providers", Required: true}, {Name: "subjects"}, {Name: "sponsors"}, {Name: "claims"},
	}}
	roleSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "identities"}, {Name: "targets"}, {Name: "logins"}, {Name: "access"},
			{Name: "max_ttl"}, {Name: "permit"}, {Name: "source_addresses"}, {Name: "sponsor"},
			{Name: "pty"}, {Name: "shell"}, {Name: "file_transfer"}, {Name: "port_forwarding"},
			{Name: "max_session"}, {Name: "idle_timeout"}, {Name: "masking"}, {Name: "redact_password_input"},
		},
		Blocks: []hcl.BlockHeaderSchema{{Type: "match"}, {Type: "commands"}, {Type: "approval"}},
	}
	matchSchema    = &hcl.BodySchema{Attributes: matchAttrs}
	commandsSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "allow"}, {Name: "deny"}}}
	approvalSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "approvers", Required: true}, {Name: "approvals"}, {Name: "max_duration"}, {Name: "exclude_sponsor"},
	}}
)

// Decode reads the identity, role and masking_profile blocks, and the
// text_masking, operators and auditors attributes, of body (a policy file, or
// the part of the serve config that is left after its own blocks) and
// checks them against opts. Any other block or attribute is an error.
// hash becomes the policy's Hash. Returns as Load does.
func Decode(body hcl.Body, hash string, opts Options) (*Policy, []Diagnostic, error) {
	return decode(body, hash, opts, nil)
}

// decode is Decode, with text, if not nil, giving the policy's Text from
// what was read of body.
func decode(body hcl.Body, hash string, opts Options, text func(*hcl.BodyContent) string) (*Policy, []Diagnostic, error) {
	dec := decoder{}
	content, hd := body.Content(policySchema)
	dec.d.addHCL(hd, body.MissingItemRange())
	var (
		identities []IdentityMatcher
		roles      []Role
		srcs       sources
		profiles   = map[string]mask.Profile{}
	)
	// broken names blocks that failed to decode: they are left out of
	// the policy, and naming them is not reported again.
	for _, b := range content.Blocks {
		errsBefore := len(dec.d.errors())
		switch b.Type {
		case "identity":
			im, pos := dec.identity(b)
			if len(dec.d.errors()) > errsBefore {
				continue
			}
			identities = append(identities, im)
			srcs.identities = append(srcs.identities, pos)
		case "role":
			r, pos := dec.role(b)
			if len(dec.d.errors()) > errsBefore {
				continue
			}
			roles = append(roles, r)
			srcs.roles = append(srcs.roles, pos)
		case "masking_profile":
			mp := dec.maskingProfile(b)
			if _, dup := profiles[mp.Name]; dup {
				dec.d.errorf(&b.DefRange, "masking_profile %q is defined twice", mp.Name)
			}
			if _, builtin := mask.BuiltinProfile(mp.Name); builtin {
				dec.d.errorf(&b.DefRange, "masking_profile %q has the name of a built-in profile (%s): choose another", mp.Name, strings.Join(mask.BuiltinProfiles(), ", "))
			}
			if len(dec.d.errors()) == errsBefore {
				profiles[mp.Name] = mp
			}
		}
	}
	srcs.textMasking = DefaultTextMasking
	if a := content.Attributes["text_masking"]; a != nil {
		pos := &blockPos{def: a.NameRange, attrs: map[string]hcl.Range{}}
		dec.str(a, "text_masking", pos, &srcs.textMasking)
		if _, ok := profiles[srcs.textMasking]; !ok && !dec.d.hasErrors() && srcs.textMasking != NoTextMasking {
			if _, builtin := mask.BuiltinProfile(srcs.textMasking); !builtin {
				dec.d.errorf(pos.at("text_masking", -1), "text_masking %q is neither %q, a built-in profile (%s) nor a masking_profile block", srcs.textMasking, NoTextMasking, strings.Join(mask.BuiltinProfiles(), ", "))
			}
		}
	}
	for _, staff := range []struct {
		name string
		out  *[]string
		pos  **blockPos
	}{{"operators", &srcs.operators, &srcs.operatorsPos}, {"auditors", &srcs.auditors, &srcs.auditorsPos}} {
		if a := content.Attributes[staff.name]; a != nil {
			pos := &blockPos{def: a.NameRange, attrs: map[string]hcl.Range{}, items: map[string][]hcl.Range{}}
			*staff.out = append([]string{}, dec.strings(a, staff.name, pos)...)
			*staff.pos = pos
		}
	}
	if dec.d.hasErrors() {
		return nil, dec.d.warnings(), &Error{Diagnostics: dec.d.errors()}
	}
	srcs.profiles = profiles
	if text != nil {
		srcs.text = text(content)
	}
	p, warnings, err := build(identities, roles, opts, &srcs, hash)
	return p, append(dec.d.warnings(), warnings...), err
}

// maskingProfile reads a masking_profile block: built-in profile or
// detector names, the characters kept visible, and custom rules. It is
// compiled here, so that a bad rule is reported where it is written.
func (dec *decoder) maskingProfile(b *hcl.Block) mask.Profile {
	pos := newPos(b)
	mp := mask.Profile{Name: b.Labels[0]}
	content, hd := b.Body.Content(maskingSchema)
	dec.d.addHCL(hd, b.DefRange)
	a := content.Attributes
	mp.Detectors = dec.strings(a["detectors"], "detectors", pos)
	if a["keep"] != nil {
		dec.integer(a["keep"], "keep", pos, &mp.Keep)
	}
	for _, cb := range content.Blocks {
		cpos := newPos(cb)
		cc, chd := cb.Body.Content(customSchema)
		dec.d.addHCL(chd, cb.DefRange)
		r := mask.CustomRule{Name: cb.Labels[0]}
		dec.str(cc.Attributes["pattern"], "pattern", cpos, &r.Pattern)
		if cc.Attributes["keep"] != nil {
			dec.integer(cc.Attributes["keep"], "keep", cpos, &r.Keep)
		}
		if _, err := mask.Compile(mask.Profile{Custom: []mask.CustomRule{r}}); err != nil {
			dec.d.errorf(cpos.at("pattern", -1), "masking_profile %q: custom %q: %v", mp.Name, r.Name, err)
			continue
		}
		mp.Custom = append(mp.Custom, r)
	}
	if len(mp.Detectors) == 0 && len(mp.Custom) == 0 {
		dec.d.errorf(&b.DefRange, "masking_profile %q masks nothing: give it detectors or custom rules", mp.Name)
	} else if _, err := mask.Compile(mp); err != nil {
		dec.d.errorf(pos.at("detectors", -1), "masking_profile %q: %v", mp.Name, err)
	}
	return mp
}

// decoder turns blocks into values, noting where each part came from and
// every mistake on the way.
type decoder struct {
	d diagnostics
}

func newPos(b *hcl.Block) *blockPos {
	return &blockPos{def: b.DefRange, attrs: map[string]hcl.Range{}, items: map[string][]hcl.Range{}}
}

func (dec *decoder) identity(b *hcl.Block) (IdentityMatcher, *blockPos) {
	pos := newPos(b)
	im := IdentityMatcher{Name: b.Labels[0]}
	content, hd := b.Body.Content(identitySchema)
	dec.d.addHCL(hd, b.DefRange)
	dec.match(content.Attributes, "", pos, &im.Match)
	return im, pos
}

// match decodes a matcher's attributes; prefix names its block in pos.
func (dec *decoder) match(attrs hcl.Attributes, prefix string, pos *blockPos, m *Match) {
	m.Providers = dec.strings(attrs["providers"], prefix+"providers", pos)
	m.Subjects = dec.strings(attrs["subjects"], prefix+"subjects", pos)
	m.Sponsors = dec.strings(attrs["sponsors"], prefix+"sponsors", pos)
	m.Claims = dec.claims(attrs["claims"], prefix+"claims", pos)
}

func (dec *decoder) role(b *hcl.Block) (Role, *blockPos) {
	pos := newPos(b)
	r := Role{Name: b.Labels[0], Access: AccessStanding}
	content, hd := b.Body.Content(roleSchema)
	dec.d.addHCL(hd, b.DefRange)
	a := content.Attributes
	r.Identities = dec.strings(a["identities"], "identities", pos)
	r.Targets = dec.strings(a["targets"], "targets", pos)
	r.Logins = dec.strings(a["logins"], "logins", pos)
	dec.str(a["access"], "access", pos, &r.Access)
	r.MaxTTL = dec.duration(a["max_ttl"], "max_ttl", pos)
	if a["permit"] != nil {
		// Present, even empty, it replaces the extensions the role's
		// capabilities would give.
		r.Permit = append([]string{}, dec.strings(a["permit"], "permit", pos)...)
	}
	r.SourceAddresses = dec.strings(a["source_addresses"], "source_addresses", pos)
	dec.str(a["sponsor"], "sponsor", pos, &r.Sponsor)
	dec.boolean(a["pty"], "pty", pos, &r.PTY)
	dec.boolean(a["shell"], "shell", pos, &r.Shell)
	dec.boolean(a["file_transfer"], "file_transfer", pos, &r.FileTransfer)
	r.PortForwarding = dec.strings(a["port_forwarding"], "port_forwarding", pos)
	r.MaxSession = dec.duration(a["max_session"], "max_session", pos)
	r.IdleTimeout = dec.duration(a["idle_timeout"], "idle_timeout", pos)
	dec.str(a["masking"], "masking", pos, &r.Masking)
	dec.boolean(a["redact_password_input"], "redact_password_input", pos, &r.RedactPasswordInput)

	seen := map[string]bool{}
	for _, nb := range content.Blocks {
		if seen[nb.Type] {
			dec.d.errorf(&nb.DefRange, "role %q has more than one %s block", r.Name, nb.Type)
			continue
		}
		seen[nb.Type] = true
		pos.attrs[nb.Type] = nb.DefRange
		switch nb.Type {
		case "match":
			c, hd := nb.Body.Content(matchSchema)
			dec.d.addHCL(hd, nb.DefRange)
			dec.match(c.Attributes, "match.", pos, &r.Match)
			if r.Match.empty() {
				dec.d.errorf(&nb.DefRange, "role %q: an empty match block matches nobody", r.Name)
			}
		case "commands":
			c, hd := nb.Body.Content(commandsSchema)
			dec.d.addHCL(hd, nb.DefRange)
			r.Commands = &Commands{
				Allow: dec.strings(c.Attributes["allow"], "commands.allow", pos),
				Deny:  dec.strings(c.Attributes["deny"], "commands.deny", pos),
			}
		case "approval":
			c, hd := nb.Body.Content(approvalSchema)
			dec.d.addHCL(hd, nb.DefRange)
			ap := &Approval{Approvals: 1}
			ap.Approvers = dec.strings(c.Attributes["approvers"], "approval.approvers", pos)
			if at := c.Attributes["approvals"]; at != nil {
				var n int
				if dec.integer(at, "approval.approvals", pos, &n) && n < 1 {
					dec.d.errorf(at.Expr.Range().Ptr(), "role %q: approvals must be at least 1", r.Name)
				}
				ap.Approvals = n
			}
			ap.MaxDuration = dec.duration(c.Attributes["max_duration"], "approval.max_duration", pos)
			if ap.MaxDuration == 0 {
				ap.MaxDuration = DefaultGrantDuration
			}
			dec.boolean(c.Attributes["exclude_sponsor"], "approval.exclude_sponsor", pos, &ap.ExcludeSponsor)
			r.Approval = ap
		}
	}
	return r, pos
}

// value evaluates an attribute (without variables or functions) and
// converts it to want, recording where it is. ok is false, with the error
// reported, when it cannot be.
func (dec *decoder) value(a *hcl.Attribute, field string, pos *blockPos, want cty.Type) (cty.Value, bool) {
	pos.attrs[field] = a.Expr.Range()
	v, hd := a.Expr.Value(nil)
	dec.d.addHCL(hd, a.Expr.Range())
	if hd.HasErrors() {
		return cty.NilVal, false
	}
	if v.IsNull() || !v.IsWhollyKnown() {
		dec.d.errorf(a.Expr.Range().Ptr(), "%s must have a value", a.Name)
		return cty.NilVal, false
	}
	v, err := convert.Convert(v, want)
	if err != nil {
		dec.d.errorf(a.Expr.Range().Ptr(), "%s: want %s: %v", a.Name, want.FriendlyName(), err)
		return cty.NilVal, false
	}
	if !v.IsWhollyKnown() || !noNulls(v) {
		dec.d.errorf(a.Expr.Range().Ptr(), "%s must not contain null", a.Name)
		return cty.NilVal, false
	}
	return v, true
}

func noNulls(v cty.Value) bool {
	if v.IsNull() {
		return false
	}
	if v.Type().IsListType() || v.Type().IsMapType() {
		for it := v.ElementIterator(); it.Next(); {
			if _, e := it.Element(); !noNulls(e) {
				return false
			}
		}
	}
	return true
}

func (dec *decoder) str(a *hcl.Attribute, field string, pos *blockPos, out *string) {
	if a == nil {
		return
	}
	if v, ok := dec.value(a, field, pos, cty.String); ok {
		*out = v.AsString()
	}
}

func (dec *decoder) boolean(a *hcl.Attribute, field string, pos *blockPos, out *bool) {
	if a == nil {
		return
	}
	if v, ok := dec.value(a, field, pos, cty.Bool); ok {
		*out = v.True()
	}
}

func (dec *decoder) integer(a *hcl.Attribute, field string, pos *blockPos, out *int) bool {
	v, ok := dec.value(a, field, pos, cty.Number)
	if !ok {
		return false
	}
	bf := v.AsBigFloat()
	n, acc := bf.Int64()
	if !bf.IsInt() || acc != 0 || n < -1<<31 || n > 1<<31-1 {
		dec.d.errorf(a.Expr.Range().Ptr(), "%s must be a whole number", a.Name)
		return false
	}
	*out = int(n)
	return true
}

func (dec *decoder) duration(a *hcl.Attribute, field string, pos *blockPos) time.Duration {
	var s string
	dec.str(a, field, pos, &s)
	if s == "" {
		return 0
	}
	t, err := time.ParseDuration(s)
	if err != nil || t < 0 {
		dec.d.errorf(a.Expr.Range().Ptr(), "%s: bad duration %q: want a positive duration such as 15m or 1h30m", a.Name, s)
		return 0
	}
	return t
}

// strings decodes a list of strings, keeping each item's range when the
// list is written out.
func (dec *decoder) strings(a *hcl.Attribute, field string, pos *blockPos) []string {
	if a == nil {
		return nil
	}
	v, ok := dec.value(a, field, pos, cty.List(cty.String))
	if !ok {
		return nil
	}
	out := make([]string, 0, v.LengthInt())
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		out = append(out, e.AsString())
	}
	if exprs, hd := hcl.ExprList(a.Expr); !hd.HasErrors() && len(exprs) == len(out) {
		for _, e := range exprs {
			pos.items[field] = append(pos.items[field], e.Range())
		}
	}
	return out
}

// claims decodes a map of claim names to lists of patterns.
func (dec *decoder) claims(a *hcl.Attribute, field string, pos *blockPos) map[string][]string {
	if a == nil {
		return nil
	}
	v, ok := dec.value(a, field, pos, cty.Map(cty.List(cty.String)))
	if !ok {
		return nil
	}
	out := map[string][]string{}
	for it := v.ElementIterator(); it.Next(); {
		k, list := it.Element()
		vals := []string{}
		for li := list.ElementIterator(); li.Next(); {
			_, e := li.Element()
			vals = append(vals, e.AsString())
		}
		out[k.AsString()] = vals
	}
	// Locate each claim's values, for errors about them.
	if pairs, hd := hcl.ExprMap(a.Expr); !hd.HasErrors() {
		for _, kv := range pairs {
			kval, kd := kv.Key.Value(nil)
			if kd.HasErrors() || kval.IsNull() || !kval.IsKnown() || kval.Type() != cty.String {
				continue
			}
			name := field + "." + kval.AsString()
			pos.attrs[name] = kv.Value.Range()
			if exprs, hd := hcl.ExprList(kv.Value); !hd.HasErrors() && len(exprs) == len(out[kval.AsString()]) {
				for _, e := range exprs {
					pos.items[name] = append(pos.items[name], e.Range())
				}
			}
		}
	}
	return out
}
