package policy

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Severities of a Diagnostic.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
)

// Diagnostic is an error or a warning about a policy, at the place in its
// source it is about. File is empty (and Line and Column zero) for a
// policy built from values.
type Diagnostic struct {
	File         string
	Line, Column int
	Severity     string
	Message      string
}

// String is "file:line:col: severity: message", the form editors jump to.
func (d Diagnostic) String() string {
	if d.File == "" {
		return d.Severity + ": " + d.Message
	}
	return fmt.Sprintf("%s:%d:%d: %s: %s", d.File, d.Line, d.Column, d.Severity, d.Message)
}

// Error is a policy that cannot be used, with every error found in it.
type Error struct {
	Diagnostics []Diagnostic
}

// Error lists the diagnostics one per line.
func (e *Error) Error() string {
	lines := make([]string, len(e.Diagnostics))
	for i, d := range e.Diagnostics {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// diagnostics collects what a load finds, in source order of discovery.
type diagnostics struct {
	list []Diagnostic
}

func (d *diagnostics) add(sev string, at *hcl.Range, format string, args ...any) {
	diag := Diagnostic{Severity: sev, Message: fmt.Sprintf(format, args...)}
	if at != nil {
		diag.File, diag.Line, diag.Column = at.Filename, at.Start.Line, at.Start.Column
	}
	d.list = append(d.list, diag)
}

func (d *diagnostics) errorf(at *hcl.Range, format string, args ...any) {
	d.add(SeverityError, at, format, args...)
}

func (d *diagnostics) warnf(at *hcl.Range, format string, args ...any) {
	d.add(SeverityWarning, at, format, args...)
}

// addHCL takes hcl's own diagnostics (syntax, unknown blocks and
// attributes, wrong types).
func (d *diagnostics) addHCL(hd hcl.Diagnostics, whole hcl.Range) {
	for _, h := range hd {
		sev := SeverityError
		if h.Severity == hcl.DiagWarning {
			sev = SeverityWarning
		}
		at := h.Subject
		if at == nil {
			at = h.Context
		}
		if at == nil {
			at = &whole
		}
		msg := h.Summary
		if h.Detail != "" {
			msg += ": " + h.Detail
		}
		d.add(sev, at, "%s", msg)
	}
}

func (d *diagnostics) hasErrors() bool {
	for _, x := range d.list {
		if x.Severity == SeverityError {
			return true
		}
	}
	return false
}

func (d *diagnostics) bySeverity(sev string) []Diagnostic {
	var out []Diagnostic
	for _, x := range d.list {
		if x.Severity == sev {
			out = append(out, x)
		}
	}
	return out
}

func (d *diagnostics) errors() []Diagnostic   { return d.bySeverity(SeverityError) }
func (d *diagnostics) warnings() []Diagnostic { return d.bySeverity(SeverityWarning) }

// blockPos locates a decoded block's parts: the block itself, its
// attributes (by name, dotted inside nested blocks) and their list items.
// A nil *blockPos locates nothing.
type blockPos struct {
	def   hcl.Range
	attrs map[string]hcl.Range
	items map[string][]hcl.Range
}

// at returns the range of field's item (item < 0: the attribute), falling
// back to the attribute, then to the block. Nil for a nil b.
func (b *blockPos) at(field string, item int) *hcl.Range {
	if b == nil {
		return nil
	}
	if item >= 0 && item < len(b.items[field]) {
		r := b.items[field][item]
		return &r
	}
	for f := field; f != ""; {
		if r, ok := b.attrs[f]; ok {
			return &r
		}
		// claims.groups falls back to claims; match.providers to match.
		i := strings.LastIndexByte(f, '.')
		if i < 0 {
			break
		}
		f = f[:i]
	}
	r := b.def
	return &r
}
