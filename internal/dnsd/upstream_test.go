package dnsd

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestAnswerToAnotherQuestionRefused: an upstream that answers another
// question than the one asked (confused, or poisoning) is treated as
// failed; its answer is neither used nor cached.
func TestAnswerToAnotherQuestionRefused(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Question[0].Name = "bank.example."
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "bank.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600}, A: net.IPv4(203, 0, 113, 9)}}
		_ = w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	defer srv.Shutdown()
	g := &group{strategy: "failover", ups: []upstream{&plainUp{addr: pc.LocalAddr().String(), net: "udp", timeout: time.Second, dial: &dialer{}, idle: make(chan *udpConn, 1)}}}
	q := new(dns.Msg)
	q.SetQuestion("www.test.", dns.TypeA)
	if r, _, err := g.exchange(context.Background(), q); err == nil {
		t.Fatalf("an answer for another question was taken: %v", r)
	}
}
