package front

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"strconv"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion/local"
	"github.com/bastionhq/bastion/bastion/pump"
	"github.com/bastionhq/bastion/recorder"
)

// sftpServerPaths are where the systems we know install OpenSSH's
// sftp-server, which a local command target runs for an sftp subsystem.
var sftpServerPaths = []string{
	"/usr/lib/openssh/sftp-server",
	"/usr/libexec/openssh/sftp-server",
	"/usr/libexec/sftp-server",
	"/usr/lib/sftp-server",
	"/usr/lib/ssh/sftp-server",
}

// findSFTPServer returns the first executable sftp-server of
// sftpServerPaths, or "".
func findSFTPServer() string {
	for _, p := range sftpServerPaths {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// SFTP packet types (draft-ietf-secsh-filexfer-02, version 3, the one
// OpenSSH speaks). Only those the observer reads are named.
const (
	sftpInit    = 1
	sftpVersion = 2
	sftpOpen    = 3
	sftpClose   = 4
	sftpRead    = 5
	sftpWrite   = 6
	sftpStatus  = 101
	sftpHandle  = 102
	sftpData    = 103
)

// Bounds of what the observer holds: beyond them it stops (the stream is
// garbage or abuse), and the session goes on without file metadata.
const (
	sftpMaxPacket  = 1 << 20 // OpenSSH's limit is 256 KiB
	sftpMaxBuffer  = 64 << 10
	sftpMaxHandle  = 256 // the protocol's limit
	sftpMaxPending = 8192
	sftpMaxFiles   = 4096
)

// sftpFile is a file the client opened, as seen in the packets.
type sftpFile struct {
	path         string
	flags        uint32
	read, wrote  uint64 // bytes that passed in DATA replies and WRITE requests
	next         uint64 // the offset at which sequential content continues
	sequential   bool   // every byte so far came at next, from offset 0
	hash         hash.Hash
	reads, write bool
}

// sftpPendingRead is a READ request waiting for its reply.
type sftpPendingRead struct {
	file   *sftpFile
	offset uint64
}

// sftpObserver reads the SFTP packets of one session, both ways, only to
// record what files passed: it never changes, holds back or blocks the
// bytes, and the first thing it cannot parse ends its observation, not the
// session. Its methods are safe for concurrent use (the two directions are
// pumped by two goroutines).
//
// Per file it reports, when the client closes it (or the session ends
// with the file open), the path, the direction, the bytes and, when the
// content passed in order from offset 0, its SHA-256. Content that came
// at other offsets (a resumed transfer, reads or writes out of order) is
// counted but not hashed: the record says sequential=false.
type sftpObserver struct {
	mu       sync.Mutex
	client   sftpStream // client to server: requests
	server   sftpStream // server to client: replies
	version  uint32
	opens    map[uint32]*sftpFile // OPEN requests waiting for a HANDLE
	files    map[string]*sftpFile // open handles
	reads    map[uint32]sftpPendingRead
	stopped  error    // why observation stopped; nil while it runs
	reported bool     // the stop has been reported
	out      [][]byte // metadata frames to record
}

func newSFTPObserver() *sftpObserver {
	o := &sftpObserver{
		opens: map[uint32]*sftpFile{},
		files: map[string]*sftpFile{},
		reads: map[uint32]sftpPendingRead{},
	}
	o.client.packet, o.client.data = o.request, o.requestData
	o.server.packet, o.server.data = o.reply, o.replyData
	return o
}

// fromClient observes bytes the client sent and returns the metadata
// frames (attribute lists) to record after them.
func (o *sftpObserver) fromClient(p []byte) [][]byte { return o.feed(&o.client, p) }

// fromServer observes bytes the server sent, as fromClient.
func (o *sftpObserver) fromServer(p []byte) [][]byte { return o.feed(&o.server, p) }

func (o *sftpObserver) feed(s *sftpStream, p []byte) [][]byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopped == nil {
		if err := s.feed(p); err != nil {
			o.stop(err)
		}
	}
	out := o.out
	o.out = nil
	return out
}

// finish reports the files still open when the session ends.
func (o *sftpObserver) finish() [][]byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopped == nil {
		for h, f := range o.files {
			o.closed(f, "session-end")
			delete(o.files, h)
		}
	}
	out := o.out
	o.out = nil
	return out
}

// stop ends the observation, reporting why once.
func (o *sftpObserver) stop(err error) {
	o.stopped = err
	o.opens, o.files, o.reads = nil, nil, nil
	if !o.reported {
		o.reported = true
		o.emit(recorder.Attrs{"event": "sftp-unparsed", "detail": err.Error()})
	}
}

func (o *sftpObserver) emit(a recorder.Attrs) {
	if b, err := recorder.EncodeAttrs(a); err == nil {
		o.out = append(o.out, b)
	}
}

// closed reports f: how is "close" or "session-end".
func (o *sftpObserver) closed(f *sftpFile, how string) {
	a := recorder.Attrs{
		"event":      "file",
		"path":       f.path,
		"flags":      fmt.Sprintf("0x%x", f.flags),
		"closed":     how,
		"sequential": strconv.FormatBool(f.sequential),
	}
	var n uint64
	switch {
	case f.write && f.reads:
		a["direction"] = "read-write"
		n = f.read + f.wrote
		f.sequential = false
		a["sequential"] = "false"
	case f.write:
		a["direction"] = "upload"
		n = f.wrote
	case f.reads:
		a["direction"] = "download"
		n = f.read
	default:
		a["direction"] = "none"
	}
	a["bytes"] = strconv.FormatUint(n, 10)
	if f.sequential {
		a["sha256"] = hex.EncodeToString(f.hash.Sum(nil))
	}
	o.emit(a)
}

// request handles a whole packet from the client (all but WRITE's data).
func (o *sftpObserver) request(typ byte, b []byte) error {
	r := sftpReader{b: b}
	switch typ {
	case sftpInit:
		return nil
	case sftpOpen:
		id := r.u32()
		path := r.str()
		flags := r.u32()
		if r.err != nil {
			return fmt.Errorf("OPEN: %w", r.err)
		}
		if len(o.opens) >= sftpMaxPending {
			return errors.New("too many OPEN requests unanswered")
		}
		o.opens[id] = &sftpFile{path: string(path), flags: flags, sequential: true, hash: sha256.New()}
	case sftpClose:
		r.u32()
		h := r.str()
		if r.err != nil {
			return fmt.Errorf("CLOSE: %w", r.err)
		}
		if f, ok := o.files[string(h)]; ok {
			delete(o.files, string(h))
			o.closed(f, "close")
		}
	case sftpRead:
		id := r.u32()
		h := r.str()
		off := r.u64()
		if r.err != nil {
			return fmt.Errorf("READ: %w", r.err)
		}
		if f, ok := o.files[string(h)]; ok {
			if len(o.reads) >= sftpMaxPending {
				return errors.New("too many READ requests unanswered")
			}
			o.reads[id] = sftpPendingRead{file: f, offset: off}
		}
	}
	return nil
}

// requestData starts a WRITE: b is its header (id, handle, offset, data
// length). It returns where its data goes, or nil to skip it.
func (o *sftpObserver) requestData(typ byte, b []byte) (sink func([]byte), need int, err error) {
	if typ != sftpWrite {
		return nil, 0, nil
	}
	r := sftpReader{b: b}
	r.u32()
	hl := r.u32()
	if r.err != nil {
		return nil, 8, nil
	}
	if hl > sftpMaxHandle {
		return nil, 0, fmt.Errorf("WRITE: handle of %d bytes", hl)
	}
	if len(b) < 8+int(hl)+12 {
		return nil, 8 + int(hl) + 12, nil
	}
	r = sftpReader{b: b[4:]}
	h := r.str()
	off := r.u64()
	r.u32()
	f, ok := o.files[string(h)]
	if !ok {
		return nil, 0, nil
	}
	f.write = true
	return f.content(off, &f.wrote), 0, nil
}

// reply handles a whole packet from the server (all but DATA's data).
func (o *sftpObserver) reply(typ byte, b []byte) error {
	r := sftpReader{b: b}
	switch typ {
	case sftpVersion:
		o.version = r.u32()
		if r.err != nil {
			return fmt.Errorf("VERSION: %w", r.err)
		}
	case sftpHandle:
		id := r.u32()
		h := r.str()
		if r.err != nil {
			return fmt.Errorf("HANDLE: %w", r.err)
		}
		if f, ok := o.opens[id]; ok {
			delete(o.opens, id)
			if len(o.files) >= sftpMaxFiles {
				return errors.New("too many open files")
			}
			o.files[string(h)] = f
		}
	case sftpStatus:
		// The answer to a failed OPEN, a READ at the end of the file…
		id := r.u32()
		if r.err != nil {
			return fmt.Errorf("STATUS: %w", r.err)
		}
		delete(o.opens, id)
		delete(o.reads, id)
	default:
		// Any other answer ends the request it answers.
		if id := r.u32(); r.err == nil {
			delete(o.opens, id)
			delete(o.reads, id)
		}
	}
	return nil
}

// replyData starts a DATA reply: b is its id and data length.
func (o *sftpObserver) replyData(typ byte, b []byte) (sink func([]byte), need int, err error) {
	if typ != sftpData {
		return nil, 0, nil
	}
	r := sftpReader{b: b}
	id := r.u32()
	r.u32()
	if r.err != nil {
		return nil, 8, nil
	}
	pr, ok := o.reads[id]
	if !ok {
		return nil, 0, nil
	}
	delete(o.reads, id)
	pr.file.reads = true
	return pr.file.content(pr.offset, &pr.file.read), 0, nil
}

// content returns the sink of data at offset off of f, counted in n.
func (f *sftpFile) content(off uint64, n *uint64) func([]byte) {
	if off != f.next {
		f.sequential = false
	}
	return func(p []byte) {
		*n += uint64(len(p))
		if f.sequential {
			f.hash.Write(p)
			f.next += uint64(len(p))
		}
	}
}

// sftpStream splits one direction of an SFTP stream into packets, in
// whatever pieces it arrives. A packet is a u32 length, a type byte and
// the rest. Packets of types whose data is bulk (WRITE, DATA) are not
// buffered: their header is, and data streams to a sink.
type sftpStream struct {
	// packet handles a whole packet body (after the type).
	packet func(typ byte, body []byte) error
	// data is asked, with the body read so far, whether the packet has
	// bulk data: a sink for what follows the header, or how many bytes
	// of header it needs (need > 0), or neither (the packet is read
	// whole and given to packet).
	data func(typ byte, head []byte) (sink func([]byte), need int, err error)

	hdr  [5]byte
	nhdr int
	typ  byte
	left uint32 // bytes of the current packet's body not yet read
	body []byte
	want int          // bytes of body to collect before looking again
	bulk bool         // the packet has bulk data: body is its header
	sink func([]byte) // where the rest of the body goes; nil skips it
	skip bool         // the rest of the body is skipped or sunk
}

func (s *sftpStream) feed(p []byte) error {
	for len(p) > 0 {
		if s.nhdr < 5 {
			n := copy(s.hdr[s.nhdr:], p)
			s.nhdr += n
			p = p[n:]
			if s.nhdr < 5 {
				return nil
			}
			l := binary.BigEndian.Uint32(s.hdr[:4])
			if l == 0 || l > sftpMaxPacket {
				return fmt.Errorf("packet of %d bytes", l)
			}
			s.typ, s.left, s.body, s.sink, s.skip = s.hdr[4], l-1, s.body[:0], nil, false
			s.bulk = false
			s.want = int(s.left)
			switch s.typ {
			case sftpWrite, sftpData:
				s.bulk, s.want = true, 8
			case sftpInit, sftpVersion, sftpOpen, sftpClose, sftpRead, sftpStatus, sftpHandle:
			default:
				// Only the id of other packets matters.
				s.want = min(4, s.want)
			}
			if s.want > sftpMaxBuffer {
				return fmt.Errorf("packet of type %d of %d bytes", s.typ, l)
			}
			if err := s.step(); err != nil {
				return err
			}
			continue
		}
		if s.skip {
			n := int(min(uint32(len(p)), s.left))
			if s.sink != nil {
				s.sink(p[:n])
			}
			p = p[n:]
			s.left -= uint32(n)
		} else {
			n := min(len(p), s.want-len(s.body))
			s.body = append(s.body, p[:n]...)
			p = p[n:]
			s.left -= uint32(n)
		}
		if err := s.step(); err != nil {
			return err
		}
	}
	return nil
}

// step acts on what has been read of the current packet.
func (s *sftpStream) step() error {
	if !s.skip && len(s.body) >= s.want {
		if s.bulk {
			sink, need, err := s.data(s.typ, s.body)
			if err != nil {
				return err
			}
			if need > len(s.body) {
				if need > int(s.left)+len(s.body) {
					return fmt.Errorf("packet of type %d: truncated header", s.typ)
				}
				s.want = need
			} else {
				s.sink, s.skip = sink, true
			}
		} else {
			if err := s.packet(s.typ, s.body); err != nil {
				return err
			}
			s.skip = true
		}
	}
	if s.left == 0 {
		if !s.skip {
			return fmt.Errorf("packet of type %d: truncated", s.typ)
		}
		s.nhdr = 0
	}
	return nil
}

// sftpReader reads the fields of an SFTP packet; the first short read
// sets err and every later read returns zero.
type sftpReader struct {
	b   []byte
	err error
}

var errSFTPShort = errors.New("short packet")

func (r *sftpReader) u32() uint32 {
	if r.err != nil || len(r.b) < 4 {
		r.err = errSFTPShort
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *sftpReader) u64() uint64 {
	if r.err != nil || len(r.b) < 8 {
		r.err = errSFTPShort
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *sftpReader) str() []byte {
	n := r.u32()
	if r.err != nil || uint64(len(r.b)) < uint64(n) {
		r.err = errSFTPShort
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// sftpRecorder is a session's recorder that also shows every chunk of
// the client's input and the server's output, once recorded, to an SFTP
// observer, and records the file metadata it reports as subsystem frames.
type sftpRecorder struct {
	pump.Recorder
	obs *sftpObserver
}

func (r sftpRecorder) Append(kind recorder.Kind, channel uint32, p []byte) (uint64, error) {
	seq, err := r.Recorder.Append(kind, channel, p)
	if err != nil || channel != 0 {
		return seq, err
	}
	var meta [][]byte
	switch kind {
	case recorder.KindInput:
		meta = r.obs.fromClient(p)
	case recorder.KindOutput:
		meta = r.obs.fromServer(p)
	}
	for _, m := range meta {
		if _, err := r.Recorder.Append(recorder.KindSubsystem, 0, m); err != nil {
			return seq, err
		}
	}
	return seq, nil
}

// finish records the metadata of files still open.
func (r sftpRecorder) finish() error {
	for _, m := range r.obs.finish() {
		if _, err := r.Recorder.Append(recorder.KindSubsystem, 0, m); err != nil {
			return err
		}
	}
	return nil
}

// runSubsystem runs a subsystem (sftp) for a local command target: the
// system's sftp-server at server, with pipes, as the user, in the
// directory and with the environment the target's command gets (without
// TERM), every byte recorded and its files' metadata with it.
func (s *frontSession) runSubsystem(ctx context.Context, name, server string, reqs <-chan *ssh.Request) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	argv := []string{server}
	attrs := s.sessionAttrs("subsystem", name)
	attrs["target-kind"] = "command"
	attrs["argv"] = fmt.Sprintf("%q", argv)
	proc := s.info.target.process("")
	s.localAttrs(attrs, proc)
	sess, rec, ok := s.begin(ctx, "subsystem", name, attrs)
	if !ok {
		return
	}
	// Requests after the start mean nothing to a subsystem.
	go func() {
		for req := range reqs {
			req.Reply(false, nil)
		}
	}()
	srec := sftpRecorder{rec, newSFTPObserver()}
	res, runErr := local.RunPiped(ctx, local.PipeConfig{Argv: argv, Env: proc.env, Dir: proc.dir, Credential: proc.cred, Stdin: s.ch, Stdout: s.ch, Stderr: s.ch.Stderr()}, srec)
	if runErr == nil {
		if err := srec.finish(); err != nil {
			runErr = pump.RecordingFailed(err)
		}
	}
	s.end(ctx, sess, outcome{res: &res, err: runErr})
}
