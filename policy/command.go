package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"

	"mvdan.cc/sh/v3/syntax"
)

// Exec commands reach the target as a string its login shell runs, so a
// rule on the raw string is easy to get around ("rm  -rf", "rm -r''f",
// "x; rm -rf /"). Rules here are matched on what the shell would run: the
// command line is parsed (as bash) into its simple commands, and each is
// taken as the argv it would get. A command line whose argv depends on
// anything but its text (variables, substitutions, globbing, brace and
// tilde expansion, redirections to files, compound commands, functions) is
// not literal: it cannot be checked, and a role with command rules refuses
// it.

// ErrNotLiteral is wrapped by ParseCommand's errors for commands whose
// argv the shell would compute rather than read.
var ErrNotLiteral = errors.New("not a literal command")

// maxCommandLen bounds what is parsed: an exec command longer than this is
// not checked but refused (where rules apply).
const maxCommandLen = 64 << 10

var parsers = sync.Pool{New: func() any { return syntax.NewParser(syntax.Variant(syntax.LangBash)) }}

// ParseCommand returns the simple commands of an exec command line, in
// order, each as the literal argv the shell would run: the commands of
// pipelines and of lists joined by ';', '&&', '||' or newlines. Quoting is
// removed; fd duplications ("2>&1") are allowed and dropped. Anything
// whose argv is not literal is an error wrapping [ErrNotLiteral], as is an
// empty command line.
func ParseCommand(cmd string) ([][]string, error) {
	if len(cmd) > maxCommandLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrNotLiteral, maxCommandLen)
	}
	if cmds, ok := plainCommands(cmd); ok {
		return cmds, nil
	}
	stmts, err := parseShell(cmd)
	if err != nil {
		return nil, err
	}
	var out [][]string
	for _, s := range stmts {
		ws, err := simpleWords(s, false)
		if err != nil {
			return nil, err
		}
		argv := make([]string, len(ws))
		for i, w := range ws {
			argv[i] = w.text
		}
		out = append(out, argv)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: the command is empty", ErrNotLiteral)
	}
	return out, nil
}

// plainCommands is the fast path of ParseCommand, for the common command
// line of plain and single-quoted words in pipelines and lists: outside
// single quotes made only of characters no shell treats specially besides
// blanks and the operators '|', '||', '&&' and ';', with no simple command
// empty or starting with a reserved word or an assignment. Anything else is
// left to the parser (ok false). FuzzCommandPattern checks that the two
// agree.
func plainCommands(cmd string) (cmds [][]string, ok bool) {
	if !utf8.ValidString(cmd) || strings.IndexByte(cmd, 0) >= 0 {
		return nil, false // refused below
	}
	var argv []string
	var word strings.Builder
	inWord := false
	endWord := func() {
		if inWord {
			argv = append(argv, word.String())
			word.Reset()
			inWord = false
		}
	}
	endCommand := func() bool {
		endWord()
		if len(argv) == 0 || strings.IndexByte(argv[0], '=') >= 0 || reservedWords[argv[0]] {
			return false
		}
		cmds = append(cmds, argv)
		argv = nil
		return true
	}
	for i := 0; i < len(cmd); i++ {
		switch c := cmd[i]; {
		case c == ' ' || c == '\t':
			endWord()
		case plainByte[c]:
			word.WriteByte(c)
			inWord = true
		case c == '\'':
			j := strings.IndexByte(cmd[i+1:], '\'')
			if j < 0 {
				return nil, false
			}
			word.WriteString(cmd[i+1 : i+1+j])
			inWord = true
			i += 1 + j
		case c == ';' || c == '|' || c == '&':
			if c != ';' && i+1 < len(cmd) && cmd[i+1] == c {
				i++ // && or ||
			} else if c == '&' {
				return nil, false // background, or a redirection
			}
			if !endCommand() {
				return nil, false
			}
		default:
			return nil, false
		}
	}
	if !endCommand() {
		return nil, false
	}
	return cmds, true
}

// plainByte marks the bytes of plain words.
var plainByte = func() (t [256]bool) {
	for _, c := range []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,@%+") {
		t[c] = true
	}
	return t
}()

// reservedWords start compound commands, or change what follows.
var reservedWords = map[string]bool{
	"if": true, "then": true, "else": true, "elif": true, "fi": true, "do": true, "done": true,
	"case": true, "esac": true, "while": true, "until": true, "for": true, "in": true, "select": true,
	"function": true, "time": true, "coproc": true, "!": true, "{": true, "}": true, "[[": true, "]]": true,
	"declare": true, "typeset": true, "local": true, "export": true, "readonly": true, "let": true, "nameref": true,
}

// parseShell parses s and flattens its lists and pipelines into the
// statements that hold simple commands.
func parseShell(s string) ([]*syntax.Stmt, error) {
	if len(s) > maxCommandLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrNotLiteral, maxCommandLen)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return nil, fmt.Errorf("%w: contains a NUL byte", ErrNotLiteral)
	}
	p := parsers.Get().(*syntax.Parser)
	f, err := p.Parse(strings.NewReader(s), "")
	parsers.Put(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotLiteral, err)
	}
	var out []*syntax.Stmt
	var walk func(st *syntax.Stmt) error
	walk = func(st *syntax.Stmt) error {
		if st.Coprocess || st.Disown {
			return fmt.Errorf("%w: coprocesses are not checked", ErrNotLiteral)
		}
		if b, ok := st.Cmd.(*syntax.BinaryCmd); ok {
			if len(st.Redirs) > 0 || st.Negated {
				return fmt.Errorf("%w: redirections of a whole list are not checked", ErrNotLiteral)
			}
			if err := walk(b.X); err != nil {
				return err
			}
			return walk(b.Y)
		}
		out = append(out, st)
		return nil
	}
	for _, st := range f.Stmts {
		if err := walk(st); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// A shellWord is one word of a simple command: its text with quoting
// removed, and (for patterns) its glob source, in which quoted or escaped
// characters are escaped so that they match only themselves.
type shellWord struct {
	text string
	glob string
	// bare: no part of the word was quoted or escaped.
	bare bool
}

// simpleWords returns the words of a statement that must be one simple
// command. pattern relaxes one rule: unquoted glob characters are kept (as
// glob syntax) rather than refused as something the shell would expand.
func simpleWords(st *syntax.Stmt, pattern bool) ([]shellWord, error) {
	call, ok := st.Cmd.(*syntax.CallExpr)
	if !ok || st.Cmd == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotLiteral, commandKind(st.Cmd))
	}
	if len(call.Assigns) > 0 {
		return nil, fmt.Errorf("%w: variable assignments are not checked", ErrNotLiteral)
	}
	for _, r := range st.Redirs {
		if !fdDuplication(r) {
			return nil, fmt.Errorf("%w: only fd duplications such as 2>&1 are allowed, not %s", ErrNotLiteral, r.Op)
		}
	}
	words := make([]shellWord, 0, len(call.Args))
	for _, w := range call.Args {
		sw, err := literalWord(w, pattern)
		if err != nil {
			return nil, err
		}
		words = append(words, sw)
	}
	return words, nil
}

func commandKind(c syntax.Command) string {
	switch c.(type) {
	case nil:
		return "no command"
	case *syntax.Subshell:
		return "subshells are not checked"
	case *syntax.FuncDecl:
		return "functions are not checked"
	case *syntax.DeclClause:
		return "declarations and exports are not checked"
	case *syntax.ArithmCmd, *syntax.LetClause:
		return "arithmetic is not checked"
	}
	return "compound commands are not checked"
}

// fdDuplication reports whether r only copies one descriptor onto another
// ("2>&1", ">&2", "<&0", "3>&-"): nothing is opened, so the argv says all.
// ">&word" with anything but a number or '-' writes to a file.
func fdDuplication(r *syntax.Redirect) bool {
	if r.Op != syntax.DplOut && r.Op != syntax.DplIn {
		return false
	}
	if r.N != nil && !digits(r.N.Value) {
		return false
	}
	t := r.Word.Lit()
	return t == "-" || digits(t)
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// literalWord unquotes a word made only of literal text and quotes.
func literalWord(w *syntax.Word, pattern bool) (shellWord, error) {
	var text, glob strings.Builder
	bare := true
	for i, part := range w.Parts {
		switch p := part.(type) {
		case *syntax.Lit:
			if !pattern {
				if err := checkExpansions(p.Value, i == 0); err != nil {
					return shellWord{}, err
				}
			}
			escaped := unquoteBare(p.Value, &text, &glob)
			bare = bare && !escaped
		case *syntax.SglQuoted:
			if p.Dollar {
				return shellWord{}, fmt.Errorf("%w: $'...' strings are not checked", ErrNotLiteral)
			}
			text.WriteString(p.Value)
			glob.WriteString(escapeGlob(p.Value))
			bare = false
		case *syntax.DblQuoted:
			if p.Dollar {
				return shellWord{}, fmt.Errorf("%w: $\"...\" strings are not checked", ErrNotLiteral)
			}
			for _, dp := range p.Parts {
				l, ok := dp.(*syntax.Lit)
				if !ok {
					return shellWord{}, fmt.Errorf("%w: %s", ErrNotLiteral, partKind(dp))
				}
				s := unquoteDouble(l.Value)
				text.WriteString(s)
				glob.WriteString(escapeGlob(s))
			}
			bare = false
		default:
			return shellWord{}, fmt.Errorf("%w: %s", ErrNotLiteral, partKind(part))
		}
	}
	return shellWord{text: text.String(), glob: glob.String(), bare: bare}, nil
}

func partKind(p syntax.WordPart) string {
	switch p.(type) {
	case *syntax.ParamExp:
		return "variables are not checked"
	case *syntax.CmdSubst:
		return "command substitutions are not checked"
	case *syntax.ArithmExp:
		return "arithmetic is not checked"
	case *syntax.ProcSubst:
		return "process substitutions are not checked"
	}
	return "globs and expansions are not checked"
}

// checkExpansions refuses unquoted text the shell would expand: glob
// characters, brace expansion, and a tilde where bash expands one.
func checkExpansions(raw string, first bool) error {
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; c {
		case '\\':
			i++ // an escaped character is literal
		case '*', '?', '[':
			return fmt.Errorf("%w: unquoted %q would be expanded by the shell; quote it", ErrNotLiteral, c)
		case '{':
			if rest := raw[i:]; strings.Contains(rest, "}") && (strings.Contains(rest, ",") || strings.Contains(rest, "..")) {
				return fmt.Errorf("%w: unquoted braces would be expanded by the shell; quote them", ErrNotLiteral)
			}
		case '~':
			if (i == 0 && first) || (i > 0 && (raw[i-1] == '=' || raw[i-1] == ':')) {
				return fmt.Errorf("%w: an unquoted '~' would be expanded by the shell; quote it", ErrNotLiteral)
			}
		}
	}
	return nil
}

// unquoteBare removes the backslashes of unquoted text, writing the text
// and its glob form (escaped characters made literal); it reports whether
// anything was escaped.
func unquoteBare(raw string, text, glob *strings.Builder) bool {
	escaped := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '\\' && i+1 < len(raw) {
			i++
			c = raw[i]
			escaped = true
			text.WriteByte(c)
			if strings.IndexByte(globMeta, c) >= 0 {
				glob.WriteByte('\\')
			}
			glob.WriteByte(c)
			continue
		}
		text.WriteByte(c)
		glob.WriteByte(c)
	}
	return escaped
}

// unquoteDouble removes the backslashes that mean something inside double
// quotes; the others stay, as the shell keeps them.
func unquoteDouble(raw string) string {
	if !strings.Contains(raw, `\`) {
		return raw
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if raw[i] == '\\' && i+1 < len(raw) && strings.IndexByte("$`\"\\\n", raw[i+1]) >= 0 {
			i++
		}
		b.WriteByte(raw[i])
	}
	return b.String()
}

// A commandPattern matches one simple command's argv word by word.
type commandPattern struct {
	src   string
	words []wordPattern
}

// A wordPattern matches one argument, or (any) any number of them.
type wordPattern struct {
	any  bool
	glob glob
	re   *regexp.Regexp
}

// compileCommandPattern parses a pattern: one simple command whose words
// are globs, "**" for any run of arguments, or "re:REGEXP" for an
// argument matching REGEXP as a whole (with '.' matching newlines unless
// the regexp says (?-s)).
func compileCommandPattern(src string) (commandPattern, error) {
	stmts, err := parseShell(src)
	if err != nil {
		return commandPattern{}, fmt.Errorf("pattern %q: %v", src, unwrapLiteral(err))
	}
	if len(stmts) != 1 {
		return commandPattern{}, fmt.Errorf("pattern %q: a pattern is one simple command, without ';', '|', '&&' or '||'", src)
	}
	ws, err := simpleWords(stmts[0], true)
	if err != nil {
		return commandPattern{}, fmt.Errorf("pattern %q: %v", src, unwrapLiteral(err))
	}
	if len(stmts[0].Redirs) > 0 {
		return commandPattern{}, fmt.Errorf("pattern %q: a pattern has no redirections", src)
	}
	if len(ws) == 0 {
		return commandPattern{}, fmt.Errorf("pattern %q is empty", src)
	}
	cp := commandPattern{src: src}
	for _, w := range ws {
		var wp wordPattern
		switch {
		case w.bare && w.text == "**":
			wp.any = true
		case strings.HasPrefix(w.text, "re:"):
			// '.' matches newlines too, as '*' does in globs: an
			// argument with a newline must not slip past a deny.
			// It is compiled alone first, so that it cannot close the
			// anchoring group ("a)|(b") and match a mere substring.
			expr := w.text[len("re:"):]
			_, err := regexp.Compile(expr)
			if err == nil {
				wp.re, err = regexp.Compile(`^(?s:` + expr + `)$`)
			}
			if err != nil {
				return commandPattern{}, fmt.Errorf("pattern %q: bad regexp %q: %v", src, expr, err)
			}
		default:
			g, err := compileGlob(w.glob)
			if err != nil {
				return commandPattern{}, fmt.Errorf("pattern %q: bad glob %q: %v", src, w.text, err)
			}
			wp.glob = g
		}
		// Consecutive "**" are one.
		if wp.any && len(cp.words) > 0 && cp.words[len(cp.words)-1].any {
			continue
		}
		cp.words = append(cp.words, wp)
	}
	return cp, nil
}

func unwrapLiteral(err error) string {
	return strings.TrimPrefix(err.Error(), ErrNotLiteral.Error()+": ")
}

func (w *wordPattern) one(arg string) bool {
	if w.re != nil {
		return w.re.MatchString(arg)
	}
	return w.glob.match(arg)
}

// match reports whether argv matches the whole pattern. Like the glob
// matcher, one word level up: on a mismatch, the most recent "**"
// swallows one more argument.
func (p *commandPattern) match(argv []string) bool {
	wi, ai := 0, 0
	starW, starA := -1, 0
	for ai < len(argv) {
		if wi < len(p.words) {
			w := &p.words[wi]
			if w.any {
				starW, starA = wi, ai
				wi++
				continue
			}
			if w.one(argv[ai]) {
				wi++
				ai++
				continue
			}
		}
		if starW < 0 {
			return false
		}
		starA++
		wi, ai = starW+1, starA
	}
	for wi < len(p.words) && p.words[wi].any {
		wi++
	}
	return wi == len(p.words)
}

// commandRules are a role's compiled commands block.
type commandRules struct {
	allow, deny []commandPattern
}

// denied returns the first deny pattern matching any of cmds.
func (c *commandRules) denied(cmds [][]string) (string, bool) {
	for i := range c.deny {
		for _, argv := range cmds {
			if c.deny[i].match(argv) {
				return c.deny[i].src, true
			}
		}
	}
	return "", false
}

// allowed reports whether every one of cmds matches an allow pattern; if
// not, it returns the first that does not.
func (c *commandRules) allowed(cmds [][]string) ([]string, bool) {
	if len(c.allow) == 0 {
		// Deny rules alone: every command they do not deny.
		return nil, true
	}
	for _, argv := range cmds {
		ok := false
		for i := range c.allow {
			if c.allow[i].match(argv) {
				ok = true
				break
			}
		}
		if !ok {
			return argv, false
		}
	}
	return nil, true
}

// IsFileTransfer reports whether an exec command is scp's remote end
// ("scp -t" to receive, "scp -f" to send): a file transfer, which the
// front door decides as ActionFileTransfer, not as an exec command.
func IsFileTransfer(command string) bool {
	words := strings.Fields(command)
	if len(words) < 2 || words[0] != "scp" {
		return false
	}
	for _, w := range words[1:] {
		if !strings.HasPrefix(w, "-") || w == "--" {
			break
		}
		if strings.ContainsAny(w[1:], "tf") {
			return true
		}
	}
	return false
}
