package front

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	gl "github.com/gliderlabs/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion/local"
	"github.com/bastionhq/bastion/bastion/pump"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/mask"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// frontEnv is the environment of a local target's command: nothing of the
// bastion's own (which may hold secrets) but a PATH.
var frontEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// localProcess is how a command target's process runs: its environment,
// its working directory and the user it runs as.
type localProcess struct {
	env  []string
	dir  string
	cred *syscall.Credential
}

// process is how t's command (or sftp-server) runs, with TERM=term if
// term is not "": frontEnv; with a user, HOME, USER and LOGNAME, in the
// user's home (or "/" if it does not exist) unless t.Dir says otherwise;
// then t.Env, which wins over all of them. Nothing of the client's
// environment requests.
func (t Target) process(term string) localProcess {
	p := localProcess{env: slices.Clone(frontEnv), dir: t.Dir, cred: t.Credential}
	if t.User != "" {
		p.env = append(p.env, "HOME="+t.Home, "USER="+t.User, "LOGNAME="+t.User)
		if p.dir == "" {
			p.dir = "/"
			if st, err := os.Stat(t.Home); t.Home != "" && err == nil && st.IsDir() {
				p.dir = t.Home
			}
		}
	}
	if term != "" {
		p.env = append(p.env, "TERM="+term)
	}
	p.env = append(p.env, t.Env...)
	return p
}

// errExecRefused is why an exec request to an exec = "refuse" target
// does not run.
var errExecRefused = errors.New("runs interactive shell sessions only: exec requests are refused")

// execArgv is what an exec request's command runs as on the command
// target t (see Target.Exec), or why it does not run.
func execArgv(t Target, command string) ([]string, error) {
	switch t.Exec {
	case ExecRefuse:
		return nil, errExecRefused
	case ExecArgs:
		words, err := splitWords(command)
		if err != nil {
			return nil, err
		}
		return append(slices.Clone(t.Command), words...), nil
	default:
		return append(slices.Clone(t.Command), "-c", command), nil
	}
}

// execMode is t.Exec, with its default.
func execMode(t Target) string {
	if t.Exec == "" {
		return ExecShell
	}
	return t.Exec
}

// splitWords splits a command line into words as a POSIX shell would,
// for a target that passes them on as arguments, without a shell: blanks
// separate words; single quotes keep everything; double quotes keep all
// but '\' before '$', '`', '"', '\' or a newline; a '\' outside quotes
// keeps the next character. What only a shell could give meaning to is
// refused rather than passed on literally: an unquoted | & ; < > ( ) $ `
// * ? [ (and # or ~ starting a word), a '$' or '`' inside double quotes,
// an unclosed quote, a trailing '\'.
func splitWords(line string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("the single quote at byte %d is not closed", i+1)
			}
			w.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			start := i
			for i++; ; i++ {
				if i >= len(line) {
					return nil, fmt.Errorf("the double quote at byte %d is not closed", start+1)
				}
				d := line[i]
				if d == '"' {
					break
				}
				if d == '$' || d == '`' {
					return nil, fmt.Errorf("%q at byte %d would be expanded by a shell, and there is none: escape it with '\\' or use single quotes", d, i+1)
				}
				if d == '\\' && i+1 < len(line) && strings.IndexByte("$`\"\\\n", line[i+1]) >= 0 {
					i++
					if line[i] != '\n' {
						w.WriteByte(line[i])
					}
					continue
				}
				w.WriteByte(d)
			}
			inWord = true
		case c == '\\':
			if i+1 >= len(line) {
				return nil, errors.New("the command line ends with '\\'")
			}
			i++
			if line[i] != '\n' {
				w.WriteByte(line[i])
				inWord = true
			}
		case strings.IndexByte("|&;<>()$`*?[", c) >= 0 || !inWord && (c == '#' || c == '~'):
			return nil, fmt.Errorf("%q at byte %d means something only to a shell, and there is none: quote it", c, i+1)
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// refuseExec refuses an exec request to a command target: the client
// reads why on its standard error and exits 1, and the refusal is an
// ssh.request_refused event with the command. The request was accepted
// only to say why: OpenSSH exits at once on a refused exec.
func (s *frontSession) refuseExec(req *ssh.Request, command, reason string, why error) {
	req.Reply(true, nil)
	info := s.info
	attrs := info.addTo(recorder.Attrs{
		"reason": reason, "request": "exec", "user": info.login + "@" + info.target.Name,
		"target": info.target.Name, "command": command, "exec-mode": execMode(info.target), "detail": why.Error(),
	})
	s.textMasker().Fields(attrs, "command", "detail")
	s.f.log.Info("ssh request refused", "reason", reason, "request", "exec", "identity", info.identity, "target", info.target.Name, "client", info.client)
	s.f.journal(events.RequestRefused, attrs, "a refused ssh request")
	if reason == events.ReasonExecNotSplit {
		s.say("target %q passes the command on as arguments, without a shell, and it cannot be split: %v", info.target.Name, why)
	} else {
		s.say("target %q %v", info.target.Name, why)
	}
	s.exit(local.Result{ExitCode: 1})
}

// localAttrs adds to a command target's session attributes whom and
// where it runs as, and the names (never the values) of the environment
// the target adds.
func (s *frontSession) localAttrs(attrs recorder.Attrs, p localProcess) {
	t := s.info.target
	uid := os.Geteuid()
	if p.cred != nil {
		uid = int(p.cred.Uid)
	}
	if t.User != "" {
		attrs["run-as"] = t.User
	} else {
		attrs["run-as"] = "bastion"
	}
	attrs["run-as.uid"] = strconv.Itoa(uid)
	if p.dir != "" {
		attrs["dir"] = p.dir
	}
	if names := t.EnvNames(); len(names) > 0 {
		attrs["env-names"] = strings.Join(names, ",")
	}
}

// ptyRequest is an SSH "pty-req" payload (RFC 4254 6.2).
type ptyRequest struct {
	Term          string
	Cols, Rows    uint32
	Width, Height uint32
	Modes         string
}

// windowChange is an SSH "window-change" payload (RFC 4254 6.7).
type windowChange struct {
	Cols, Rows    uint32
	Width, Height uint32
}

// enterSession counts a session handler in and registers its live
// session, unless the front door is shutting down (then nc is rejected and
// ok is false). leave must follow.
func (f *Front) enterSession(ctx context.Context, info *authInfo, nc ssh.NewChannel) (lctx context.Context, life *liveSession, leave func(), ok bool) {
	if !f.startSession() {
		nc.Reject(ssh.ResourceShortage, "bastion: shutting down")
		return nil, nil, nil, false
	}
	lc := f.lifecycle()
	lctx, life, err := lc.add(ctx, info)
	if err != nil {
		f.sessions.Done()
		nc.Reject(ssh.ResourceShortage, "bastion: "+err.Error())
		return nil, nil, nil, false
	}
	return lctx, life, func() {
		lc.remove(life)
		f.sessions.Done()
	}, true
}

// startSession counts a session handler in, unless the front door is
// shutting down.
func (f *Front) startSession() bool {
	f.closeMu.Lock()
	defer f.closeMu.Unlock()
	if f.closing {
		return false
	}
	f.sessions.Add(1)
	return true
}

// handleSession serves one "session" channel of an authenticated
// connection: requests before shell or exec set it up (a PTY, its size);
// shell or exec runs the target's command, recorded.
func (f *Front) handleSession(_ *gl.Server, conn *ssh.ServerConn, nc ssh.NewChannel, ctx gl.Context) {
	var info *authInfo
	if conn.Permissions != nil {
		info, _ = conn.Permissions.ExtraData[authInfoKey{}].(*authInfo)
	}
	if info == nil {
		nc.Reject(ssh.Prohibited, "bastion: not authenticated")
		return
	}
	lctx, life, leave, ok := f.enterSession(ctx, info, nc)
	if !ok {
		return
	}
	defer leave()
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	s := &frontSession{f: f, info: info, ch: ch, perms: conn.Permissions, life: life}
	// When the bastion ends the session, the client is told why at once;
	// the session's own goroutines stop the target and record the end.
	stop := context.AfterFunc(lctx, func() {
		if e := endCause(lctx); e != nil {
			s.tell(e)
		}
	})
	defer stop()
	s.serve(lctx, reqs)
}

// frontSession is one session channel.
type frontSession struct {
	f     *Front
	info  *authInfo
	ch    ssh.Channel
	perms *ssh.Permissions
	env   []envVar // allow-listed env requests before the start (SSH targets)
	life  *liveSession

	// decision is the policy decision that let the session run, and
	// policyHash the hash of the policy that made it.
	decision   policy.Decision
	policyHash string
	// masker masks the target's output, when the decision names a
	// masking profile; prompt watches for password prompts, when it
	// asks for input at them to be redacted. Both are nil otherwise.
	masker *mask.Masker
	prompt *promptWatch
	// hiddenCommand, if set, is what masking found in the words of an
	// exec command that it did not find in the command as written: the
	// command is then kept hidden whole.
	hiddenCommand []mask.Hit

	// mu guards pty against tell, which runs on another goroutine; the
	// serve goroutine, which alone writes pty, reads it without mu.
	mu      sync.Mutex
	pty     *ptyRequest // set by a pty-req before the session starts
	started bool        // guarded by mu: a shell, exec or subsystem request was accepted
	told    bool        // guarded by mu: the bastion ended the session and said why
}

// say writes a message of the bastion's own to the client's stderr. Once
// the client has been told why the bastion ended the session, nothing more
// is said: what fails afterwards is a consequence.
func (s *frontSession) say(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.told {
		return
	}
	s.sayLocked(fmt.Sprintf(format, args...))
}

func (s *frontSession) sayLocked(text string) {
	msg := "bastion: " + text + "\n"
	if s.pty != nil {
		msg = "\r" + msg[:len(msg)-1] + "\r\n"
	}
	io.WriteString(s.ch.Stderr(), msg)
}

// tell says why the bastion ends the session, once. A session that has not
// started its command yet is closed here; a running one is stopped by its
// context, and records its end with e's reason (see recordEnd).
func (s *frontSession) tell(e *sessionEnd) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.told {
		return
	}
	s.sayLocked(e.message)
	s.told = true
	s.f.log.Info("ssh session ended by the bastion", "reason", e.reason, "identity", s.info.identity, "target", s.info.target.Name, "detail", e.message)
	if !s.started {
		s.ch.CloseWrite()
		s.ch.Close()
	}
}

// start accepts req (shell, exec, subsystem) and marks the session
// started, unless the bastion has already ended it, when req is refused.
func (s *frontSession) start(req *ssh.Request) bool {
	s.mu.Lock()
	s.started = !s.told
	started := s.started
	s.mu.Unlock()
	req.Reply(started, nil)
	return started
}

// serve handles the session's requests until one starts it (shell, exec,
// subsystem) or ends it. Each request type has its own method; those that
// start or end the session return true, after which the session is over
// when serve returns.
func (s *frontSession) serve(ctx context.Context, reqs <-chan *ssh.Request) {
	for req := range reqs {
		var over bool
		switch req.Type {
		case "pty-req":
			s.ptyReq(req)
		case "window-change":
			s.windowChange(req)
		case "shell", "exec":
			over = s.command(ctx, req, reqs)
		case "subsystem":
			over = s.subsystem(ctx, req, reqs)
		case "auth-agent-req@openssh.com":
			s.refuseForwarding(req, "agent_forwarding_refused", "agent forwarding is refused")
		case "x11-req":
			s.refuseForwarding(req, "x11_forwarding_refused", "X11 forwarding is refused")
		case "env":
			s.envReq(req)
		default:
			// Everything else: not passed on.
			req.Reply(false, nil)
		}
		if over {
			return
		}
	}
}

// ptyReq takes a terminal request before the start, if the certificate
// permits a terminal.
func (s *frontSession) ptyReq(req *ssh.Request) {
	if _, ok := s.perms.Extensions["permit-pty"]; !ok {
		s.say("your certificate does not permit a terminal (permit-pty)")
		req.Reply(false, nil)
		return
	}
	var p ptyRequest
	if err := ssh.Unmarshal(req.Payload, &p); err != nil {
		req.Reply(false, nil)
		return
	}
	s.mu.Lock()
	s.pty = &p
	s.mu.Unlock()
	req.Reply(true, nil)
}

// windowChange folds a size change before the start into the terminal
// request (after the start, the runner or mirrorRequests takes them).
func (s *frontSession) windowChange(req *ssh.Request) {
	var w windowChange
	if s.pty != nil && ssh.Unmarshal(req.Payload, &w) == nil {
		s.mu.Lock()
		s.pty.Cols, s.pty.Rows = w.Cols, w.Rows
		s.mu.Unlock()
	}
	req.Reply(false, nil)
}

// envReq keeps an environment variable to pass on to an SSH target, if
// the allow-list has it; command targets take none.
func (s *frontSession) envReq(req *ssh.Request) {
	var e envVar
	ok := s.info.target.SSH != "" && ssh.Unmarshal(req.Payload, &e) == nil && envAllowed(e.Name)
	if ok {
		s.env = append(s.env, e)
	}
	req.Reply(ok, nil)
}

// refuseForwarding refuses a forwarding request of the session (agent,
// X11): journaled with reason, and said to the client.
func (s *frontSession) refuseForwarding(req *ssh.Request, reason, message string) {
	s.f.requestRefused(s.info, s.info.login+"@"+s.info.target.Name, req.Type, reason)
	s.say("%s", message)
	req.Reply(false, nil)
}

// command handles a shell or exec request: authorized by policy, the
// command target's argv worked out (which may refuse it), then run on the
// target, recorded. It returns true: the request starts or ends the
// session, except a malformed exec request, which is refused.
func (s *frontSession) command(ctx context.Context, req *ssh.Request, reqs <-chan *ssh.Request) bool {
	var command string
	action := policy.ActionShell
	if req.Type == "exec" {
		var e struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &e); err != nil {
			req.Reply(false, nil)
			return false
		}
		command = e.Command
		action = policy.ActionExec
		if policy.IsFileTransfer(command) {
			action = policy.ActionFileTransfer
		}
	}
	if !s.authorize(req, action, command) {
		return true
	}
	// A command target's argv: what exec = "…" makes of an exec request,
	// which may be refused.
	var argv []string
	if s.info.target.SSH == "" {
		argv = slices.Clone(s.info.target.Command)
		if req.Type == "exec" {
			var err error
			if argv, err = execArgv(s.info.target, command); err != nil {
				reason := events.ReasonExecNotSplit
				if errors.Is(err, errExecRefused) {
					reason = events.ReasonExecRefused
				}
				s.refuseExec(req, command, reason, err)
				return true
			}
		}
	}
	if !s.start(req) {
		return true
	}
	if s.info.target.SSH != "" {
		s.runUpstream(ctx, req.Type, command, reqs)
	} else {
		s.run(ctx, req.Type, command, argv, reqs)
	}
	return true
}

// subsystem handles a subsystem request: only sftp, authorized as a file
// transfer, run by the system's sftp-server for a command target or passed
// on to an SSH target. It returns true: the request starts or ends the
// session.
func (s *frontSession) subsystem(ctx context.Context, req *ssh.Request, reqs <-chan *ssh.Request) bool {
	var sub struct{ Name string }
	ssh.Unmarshal(req.Payload, &sub)
	var server string
	if sub.Name == "sftp" && s.info.target.SSH == "" {
		server = findSFTPServer()
	}
	if sub.Name == "sftp" && !s.authorize(req, policy.ActionFileTransfer, "") {
		return true
	}
	if sub.Name != "sftp" || s.info.target.SSH == "" && server == "" {
		// Accepted only to say why, and end: OpenSSH exits at once on a
		// refused subsystem, before it prints what came with it.
		req.Reply(true, nil)
		if sub.Name == "sftp" {
			s.say("sftp is not available on target %q (no sftp-server)", s.info.target.Name)
		} else {
			s.say("subsystem %q is not supported (only sftp)", sub.Name)
		}
		s.exit(local.Result{ExitCode: 1})
		return true
	}
	if !s.start(req) {
		return true
	}
	if s.info.target.SSH != "" {
		s.runUpstream(ctx, req.Type, sub.Name, reqs)
	} else {
		s.runSubsystem(ctx, sub.Name, server, reqs)
	}
	return true
}

// sessionAttrs are the attributes of a session's start leaf that every
// kind of target has.
func (s *frontSession) sessionAttrs(kind, command string) recorder.Attrs {
	info := s.info
	attrs := info.addTo(recorder.Attrs{"kind": "ssh", "request": kind, "login": info.login, "target": info.target.Name})
	switch kind {
	case "exec":
		attrs["command"] = command
	case "subsystem":
		attrs["subsystem"] = command
	}
	if s.pty != nil {
		attrs["term"] = s.pty.Term
	}
	s.policyAttrs(attrs)
	return attrs
}

// begin starts recording a session: its start leaf, then the exec
// command, the PTY request and the environment passed, as frames. If any
// of it cannot be recorded, the client is told, and ok is false.
func (s *frontSession) begin(ctx context.Context, kind, command string, attrs recorder.Attrs) (sess *recorder.Session, rec journalRecorder, ok bool) {
	info := s.info
	if err := s.f.opts.Journal.Err(); err != nil {
		s.f.log.Error("ssh session refused: the journal is failing", "error", err, "identity", info.identity)
		s.say("the journal is failing, so the session cannot be recorded: new sessions are refused until it works")
		s.exit(local.Result{ExitCode: 255})
		return nil, journalRecorder{}, false
	}
	// What the client sent is kept masked: the command, the subsystem's
	// name, the command's arguments.
	s.textMasker().Fields(attrs, "command", "subsystem", "term")
	if s.hiddenCommand != nil {
		attrs["command"] = strings.Repeat("*", len(command))
		attrs[mask.MaskedKey] = mask.JoinSummaries(attrs[mask.MaskedKey], strings.Join(mask.Summary("command", s.hiddenCommand), ","))
	}
	sess, err := s.f.opts.Journal.StartSession(ctx, recorder.SessionInfo{Attrs: attrs})
	if err != nil {
		s.f.log.Error("start recording an ssh session", "error", err, "identity", info.identity)
		s.say("the session cannot be recorded, so it does not run")
		s.exit(local.Result{ExitCode: 255})
		return nil, journalRecorder{}, false
	}
	rec = journalRecorder{sess, s.life, s.f.metrics}
	s.f.metrics.SessionStarted(kind)
	if s.life != nil {
		s.life.setID(sess.ID().String())
	}
	tm := s.textMasker()
	if kind == "exec" {
		// The command as sent, masked: a mask frame first says what.
		masked, hits := tm.Text(command)
		if s.hiddenCommand != nil {
			masked, hits = strings.Repeat("*", len(command)), hideAll(s.hiddenCommand, len(command))
		}
		err := recordMasks(rec, 0, "exec", "positions", positions(hits))
		if err == nil {
			_, err = rec.Append(recorder.KindExec, 0, []byte(masked))
		}
		if err != nil {
			s.unrecorded(sess, err)
			return nil, journalRecorder{}, false
		}
	}
	if s.pty != nil {
		pa, err := recorder.EncodeAttrs(recorder.Attrs{"term": s.pty.Term, "cols": strconv.Itoa(int(s.pty.Cols)), "rows": strconv.Itoa(int(s.pty.Rows))})
		if err == nil {
			_, err = rec.Append(recorder.KindPTY, 0, pa)
		}
		if err != nil {
			s.unrecorded(sess, err)
			return nil, journalRecorder{}, false
		}
	}
	if len(s.env) > 0 {
		env := recorder.Attrs{}
		found := map[string][]string{}
		for _, e := range s.env {
			name := strings.ToLower(e.Name)
			v, hits := tm.Text(e.Value)
			env[name] = v
			for _, h := range hits {
				found[h.Detector] = append(found[h.Detector], name)
			}
		}
		err := recordMasks(rec, 0, "env", "keys", found)
		var pa []byte
		if err == nil {
			pa, err = recorder.EncodeAttrs(env)
		}
		if err == nil {
			_, err = rec.Append(recorder.KindEnv, 0, pa)
		}
		if err != nil {
			s.unrecorded(sess, err)
			return nil, journalRecorder{}, false
		}
	}
	return sess, rec, true
}

// run runs argv, the target's command for a shell or exec request,
// recorded, and sends its exit status.
func (s *frontSession) run(ctx context.Context, kind, command string, argv []string, reqs <-chan *ssh.Request) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	info := s.info
	var term string
	if s.pty != nil {
		term = s.pty.Term
	}
	proc := info.target.process(term)
	attrs := s.sessionAttrs(kind, command)
	attrs["target-kind"] = "command"
	own := len(info.target.Command)
	if kind != "exec" {
		own = len(argv)
	}
	margv, hits, hidden := maskArgv(s.textMasker(), argv, own, command)
	attrs["argv"] = fmt.Sprintf("%q", margv)
	if len(hits) > 0 {
		attrs[mask.MaskedKey] = mask.JoinSummaries(attrs[mask.MaskedKey], strings.Join(mask.Summary("argv", hits), ","))
	}
	if hidden {
		// A value the command's quoting hid from the masker is in it:
		// the command is kept hidden whole (fail closed).
		s.hiddenCommand = hits
	}
	if kind == "exec" {
		attrs["exec-mode"] = execMode(info.target)
	}
	s.localAttrs(attrs, proc)
	sess, rec, ok := s.begin(ctx, kind, command, attrs)
	if !ok {
		return
	}

	resize := make(chan local.Size)
	done := make(chan struct{})
	defer close(done)
	// Requests after the start: window changes reach the terminal; the
	// rest is refused.
	go func() {
		for req := range reqs {
			if req.Type == "window-change" && s.pty != nil {
				var w windowChange
				if ssh.Unmarshal(req.Payload, &w) == nil {
					select {
					case resize <- local.Size{Cols: int(w.Cols), Rows: int(w.Rows)}:
					case <-done:
					}
				}
			}
			req.Reply(false, nil)
		}
	}()

	var res local.Result
	var runErr error
	prec := s.redacting(rec)
	if s.pty == nil {
		res, runErr = local.RunPiped(ctx, local.PipeConfig{
			Argv: argv, Env: proc.env, Dir: proc.dir, Credential: proc.cred,
			Stdin: s.ch, Stdout: s.ch, Stderr: s.ch.Stderr(), Filter: s.filter,
		}, prec)
	} else {
		res, runErr = local.RunPTY(ctx, local.PTYConfig{
			Argv: argv, Env: proc.env, Dir: proc.dir, Credential: proc.cred,
			Stdin: s.ch, StdinIsTerminal: true, Stdout: s.ch,
			Size:   local.Size{Cols: int(s.pty.Cols), Rows: int(s.pty.Rows)},
			Resize: resize, Filter: s.filter,
		}, prec)
	}
	s.end(ctx, sess, outcome{res: &res, err: runErr})
}

// An outcome is how a recorded session's command ended, as end takes it.
type outcome struct {
	// res is the command's exit status, recorded as the exit frame and
	// sent to the client; nil when there is none (a target that closed
	// without one, or that was never reached).
	res *local.Result
	// signal, if set, is the target's exit-signal request as it sent it:
	// passed on to the client as it is, in place of res.
	signal []byte
	// err is why the session stopped early or failed, or nil. One
	// wrapping [pump.ErrRecordingFailed] ends the session unrecorded.
	err error
	// attrs are added to the end leaf.
	attrs recorder.Attrs
	// failure, if set, is what the client reads instead of the command's
	// status: the target could not be reached or set up. It is recorded
	// with err as a marker before the end.
	failure string
}

// end is the one way a recorded session ends. It records how (a marker
// for a failure, the exit frame, the end leaf, committed), then tells the
// client (the exit status or signal, or why it failed) and closes the
// channel for writing: a client never hears an exit the journal does not
// hold. When recording fails, at any step or before, the client is told
// the session could not be recorded, and it exits 255.
func (s *frontSession) end(ctx context.Context, sess *recorder.Session, o outcome) {
	if errors.Is(o.err, pump.ErrRecordingFailed) {
		s.unrecorded(sess, o.err)
		return
	}
	if o.err != nil && ctx.Err() == nil {
		s.f.log.Error("ssh session", "session", sess.ID().String(), "error", o.err, "identity", s.info.identity, "target", s.info.target.Name)
	}
	if o.failure != "" {
		note := strings.ToValidUTF8(o.failure+": "+o.err.Error(), "\uFFFD")
		if _, err := sess.Append(recorder.KindMarker, 0, []byte(note)); err != nil {
			s.unrecorded(sess, err)
			return
		}
	}
	if err := s.recordEnd(ctx, sess, o); err != nil {
		s.f.log.Error("end recording an ssh session", "session", sess.ID().String(), "error", err)
		s.say("the end of the session could not be recorded")
		s.exit(local.Result{ExitCode: 255})
		return
	}
	switch {
	case o.failure != "":
		s.say("%s: %s", s.info.target.Name, o.failure)
		s.exit(local.Result{ExitCode: 255})
	case o.signal != nil:
		s.ch.SendRequest("exit-signal", false, o.signal)
		s.ch.CloseWrite()
	case o.res != nil && (o.err == nil || *o.res != local.Result{}):
		s.exit(*o.res)
	case o.err != nil:
		s.say("the session failed: %v", o.err)
		s.exit(local.Result{ExitCode: 255})
	default:
		// The target closed without an exit status: so does the bastion.
		s.ch.CloseWrite()
	}
}

// unrecorded ends a session whose recording failed: no end leaf can be
// written, but the end is counted, as every other, and the client is told
// why.
func (s *frontSession) unrecorded(sess *recorder.Session, err error) {
	s.f.log.Error("ssh session ended: recording failed", "session", sess.ID().String(), "error", err)
	s.f.metrics.SessionEnded(events.EndRecordingFailed)
	s.say("the session was ended because it could not be recorded")
	s.exit(local.Result{ExitCode: 255})
}

// recordEnd records how the session ended: an exit frame when o has a
// status, then the end leaf with its reason: exited, or the bastion's
// cause when it ended the session (expiry, revocation, idleness, the
// maximum duration, an operator, shutdown), stopped, error, or
// no-exit-status.
func (s *frontSession) recordEnd(ctx context.Context, sess *recorder.Session, o outcome) error {
	end := recorder.Attrs{"reason": events.EndExited}
	for k, v := range o.attrs {
		end[k] = v
	}
	switch e := endCause(ctx); {
	case o.err != nil && e != nil:
		end["reason"] = e.reason
		end["detail"] = e.message
		for k, v := range e.attrs {
			end[k] = v
		}
	case o.err != nil && ctx.Err() != nil:
		end["reason"] = events.EndStopped
		end["detail"] = context.Cause(ctx).Error()
	case o.err != nil:
		end["reason"] = events.EndError
		end["detail"] = o.err.Error()
	}
	defer func() { s.f.metrics.SessionEnded(end["reason"]) }()
	if o.res == nil {
		if o.err == nil {
			end["reason"] = events.EndNoExitStatus
		}
		return sess.End(context.WithoutCancel(ctx), end)
	}
	if err := local.RecordExit(sess, *o.res, end); err != nil {
		return err
	}
	return sess.End(context.WithoutCancel(ctx), end)
}

// exit sends the client the command's exit status (or the signal that
// killed it) and closes the channel for writing. A session the bastion
// ended exits 255, as ssh does for its own errors: the client was told why.
func (s *frontSession) exit(res local.Result) {
	s.mu.Lock()
	if s.told {
		res = local.Result{ExitCode: 255}
	}
	s.mu.Unlock()
	if res.Signal != "" {
		s.ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Message    string
			Lang       string
		}{Signal: res.Signal}))
	} else {
		s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(res.ExitCode)}))
	}
	s.ch.CloseWrite()
}

// journalRecorder is a journal session as the pumps record to it: every
// frame recorded is activity for the idle timeout of life (if not nil),
// and counted in the metrics.
type journalRecorder struct {
	*recorder.Session
	life *liveSession
	m    Metrics
}

func (r journalRecorder) Append(kind recorder.Kind, channel uint32, p []byte) (uint64, error) {
	if r.life != nil {
		r.life.touch()
	}
	seq, err := r.Session.Append(kind, channel, p)
	if err == nil && r.life != nil {
		r.life.bytes.Add(int64(len(p)))
	}
	if err == nil && r.m != nil {
		r.m.Recorded(kind, len(p))
	}
	return seq, err
}
