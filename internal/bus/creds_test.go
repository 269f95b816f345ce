package bus_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
)

// An external bus in operator (JWT) mode: Ops signs in with a NATS
// credentials file, as it would against Synadia Cloud or a secured cluster.
func TestExternalCredentialsFile(t *testing.T) {
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	ojwt, err := oc.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	op, err := jwt.DecodeOperatorClaims(ojwt)
	if err != nil {
		t.Fatal(err)
	}
	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ac := jwt.NewAccountClaims(apub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	ajwt, err := ac.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.IssuerAccount = apub
	ujwt, err := uc.Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := ukp.Seed()
	creds, err := jwt.FormatUserConfig(ujwt, seed)
	if err != nil {
		t.Fatal(err)
	}
	credsFile := filepath.Join(t.TempDir(), "ops.creds")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}

	// Operator mode with JetStream wants a system account.
	skp, _ := nkeys.CreateAccount()
	spub, _ := skp.PublicKey()
	sjwt, err := jwt.NewAccountClaims(spub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	res := &server.MemAccResolver{}
	if err := res.Store(apub, ajwt); err != nil {
		t.Fatal(err)
	}
	if err := res.Store(spub, sjwt); err != nil {
		t.Fatal(err)
	}
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true, TrustedOperators: []*jwt.OperatorClaims{op}, AccountResolver: res, SystemAccount: spub,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Shutdown()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("not ready")
	}

	c := config.Default().Bus
	c.URL, c.Credentials = s.ClientURL(), credsFile
	b, err := bus.Open(context.Background(), bus.Options{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	acks, err := b.Publish(context.Background(), mkEvents(3, "creds.x"))
	if err != nil || acks[2].Position.Seq == 0 {
		t.Fatalf("publish with credentials: %v", err)
	}
	// Without credentials the server refuses the connection.
	c.Credentials = ""
	if _, err := bus.Open(context.Background(), bus.Options{Config: c}); err == nil {
		t.Fatal("connected without credentials")
	}
}
