//go:build !linux

package front

import "net"

// withQuickAck returns c: acknowledging at once (TCP_QUICKACK) is Linux's.
func withQuickAck(c net.Conn) net.Conn { return c }
