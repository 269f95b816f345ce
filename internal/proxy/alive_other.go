//go:build !unix

package proxy

// alive cannot peek at a socket here without blocking; a pooled
// connection is assumed open, and a request that cannot be sent again
// fails (502) if the upstream closed it meanwhile.
func alive(pc *h1Conn) bool { return pc.br.Buffered() == 0 }
