//go:build unix

package proxy

import "syscall"

// alive peeks at the socket without blocking: an idle live connection has
// nothing to read (EAGAIN). EOF (the upstream closed it), bytes nobody
// asked for (out of step) and any error (a reset) all mean it must not be
// used. A read deadline cannot do this: a deadline already past fails the
// read before the socket is looked at.
func alive(pc *h1Conn) bool {
	if pc.br.Buffered() > 0 {
		return false
	}
	sc, ok := pc.c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	_ = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true
	})
	return ok
}
