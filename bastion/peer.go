package bastion

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"slices"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A peer is the process at the other end of a connection to one of
// serve's unix sockets, as the kernel reports it when it connected
// (SO_PEERCRED, SO_PEERGROUPS), never as it says.
type peer struct {
	uid, gid, pid int
	// groups are its supplementary groups; nil when the kernel cannot
	// say (before Linux 4.13).
	groups []int
}

// peerOf returns the kernel's account of c's peer.
func peerOf(c *net.UnixConn) (*peer, error) {
	if c == nil {
		return nil, errors.New("not a unix socket connection")
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var groups []int
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if credErr == nil {
			groups, _ = peerGroups(int(fd))
		}
	}); err != nil {
		return nil, err
	}
	if credErr != nil {
		return nil, fmt.Errorf("peer credentials: %w", credErr)
	}
	return &peer{uid: int(cred.Uid), gid: int(cred.Gid), pid: int(cred.Pid), groups: groups}, nil
}

// peerGroups reads SO_PEERGROUPS: the supplementary groups the peer had
// when it connected. x/sys/unix has no helper for this option, whose
// value is an array of gid_t.
func peerGroups(fd int) ([]int, error) {
	buf := make([]uint32, 64)
	for range 3 {
		n := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		switch errno {
		case 0:
			out := make([]int, 0, n/4)
			for _, g := range buf[:n/4] {
				out = append(out, int(g))
			}
			return out, nil
		case unix.ERANGE:
			// n is the size needed now.
			buf = make([]uint32, n/4+1)
		default:
			return nil, errno
		}
	}
	return nil, unix.ERANGE
}

// self is whether the peer runs as root or as serve's own user.
func (p *peer) self() bool { return p.uid == 0 || p.uid == os.Getuid() }

// inGroup reports whether the peer is a member of group gid: its primary
// group, one of its supplementary groups as the kernel reports them, or,
// when the kernel cannot say, as its account lists them.
func (p *peer) inGroup(gid int) bool {
	if p.gid == gid || slices.Contains(p.groups, gid) {
		return true
	}
	if p.groups != nil {
		return false
	}
	u, err := user.LookupId(strconv.Itoa(p.uid))
	if err != nil {
		return false
	}
	ids, err := u.GroupIds()
	return err == nil && (u.Gid == strconv.Itoa(gid) || slices.Contains(ids, strconv.Itoa(gid)))
}

// account is the name of the peer's account, "" when its uid has none.
func (p *peer) account() string {
	u, err := user.LookupId(strconv.Itoa(p.uid))
	if err != nil {
		return ""
	}
	return u.Username
}
