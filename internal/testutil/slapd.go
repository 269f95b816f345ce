package testutil

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/opsgraph/ops/internal/testcert"
)

const slapdBin = "/usr/sbin/slapd"

// Slapd is a real OpenLDAP server run by a test: mdb backend, the memberof
// overlay (so groupOfNames membership shows up as memberOf on the member,
// as in Active Directory), and TLS on both ldaps:// and StartTLS with a
// certificate from a throwaway CA.
type Slapd struct {
	URL           string // ldap://127.0.0.1:port/ (offers StartTLS)
	LDAPSURL      string // ldaps://127.0.0.1:port/
	CAFile        string // PEM of the CA that signed the server certificate
	WrongCAFile   string // PEM of a CA that did not, for verification failures
	AdminDN       string
	AdminPassword string
	BaseDN        string

	t      testing.TB
	conf   string
	out    *SyncBuffer
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartSlapd starts slapd on two free loopback ports, adds the base entry
// dc=example,dc=org and then ldif (which must not repeat it; people go
// under ou=people, see the ACL below), and stops the server on cleanup.
// The test fails when OpenLDAP is not installed (Require).
func StartSlapd(t testing.TB, ldif string) *Slapd {
	t.Helper()
	_, err := os.Stat(slapdBin)
	Require(t, err == nil, "OpenLDAP ("+slapdBin+")", "apt-get install --no-install-recommends slapd ldap-utils")
	ldapadd, err := exec.LookPath("ldapadd")
	Require(t, err == nil, "ldapadd", "apt-get install --no-install-recommends ldap-utils")
	dir := t.TempDir()
	s := &Slapd{
		AdminDN: "cn=admin,dc=example,dc=org", AdminPassword: "admin-secret",
		BaseDN: "dc=example,dc=org", t: t, out: &SyncBuffer{},
		conf: filepath.Join(dir, "slapd.conf"),
	}
	ports := freePorts(t, 2)
	s.URL = fmt.Sprintf("ldap://127.0.0.1:%d/", ports[0])
	s.LDAPSURL = fmt.Sprintf("ldaps://127.0.0.1:%d/", ports[1])

	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	s.CAFile, s.WrongCAFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "wrong-ca.pem")
	writeTLSFiles(t, s.CAFile, certFile, keyFile)
	writeTLSFiles(t, s.WrongCAFile, filepath.Join(dir, "wrong.pem"), filepath.Join(dir, "wrong.key"))

	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	// A slapd.conf rather than a cn=config tree: slapd 2.5 still reads it
	// with -f, and it needs no slapadd step or LDIF schema conversion.
	conf := fmt.Sprintf(slapdConf, dir, certFile, keyFile, s.CAFile, s.BaseDN, s.AdminDN, s.AdminPassword, data)
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	s.Start()

	file := filepath.Join(dir, "data.ldif")
	full := "dn: dc=example,dc=org\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n" + ldif
	if err := os.WriteFile(file, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ldapadd, "-x", "-H", s.URL, "-D", s.AdminDN, "-w", s.AdminPassword, "-f", file)
	cmd.Env = append(os.Environ(), "LDAPNOINIT=1") // ignore the machine's ldap.conf and ~/.ldaprc
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ldapadd: %v\n%s", err, out)
	}
	return s
}

// slapd.conf template. The ACL lets anyone authenticate against
// userPassword but nobody read it, as a real directory would, and lets
// people (entries under ou=people) read only their own entry: a client that
// searches on a connection still bound as a user, instead of binding as its
// service account again, finds nothing. Anonymous clients read the rest.
const slapdConf = `include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
TLSCertificateFile %[2]s
TLSCertificateKeyFile %[3]s
TLSCACertificateFile %[4]s
database mdb
suffix "%[5]s"
rootdn "%[6]s"
rootpw %[7]s
directory %[8]s
maxsize 67108864
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
access to attrs=userPassword by self write by anonymous auth by * none
access to * by self read by dn.subtree="ou=people,%[5]s" none by * read
`

// Start runs slapd (again) on the same ports and data, and returns once it
// accepts an admin bind. Stop then Start is a directory outage and recovery.
func (s *Slapd) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	// -d 0 keeps slapd in the foreground (so it is our child and dies with
	// the test) without debug output; startup errors still reach stderr.
	cmd := exec.Command(slapdBin, "-d", "0", "-f", s.conf, "-h", s.URL+" "+s.LDAPSURL)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start slapd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited

	CheckFor(s.t, 15*time.Second, 20*time.Millisecond, func() error {
		select {
		case <-exited:
			s.t.Fatalf("slapd exited during startup: %s\n%s", cmd.ProcessState, s.out.String())
		default:
		}
		return s.adminBind()
	})
}

func (s *Slapd) adminBind() error {
	c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: time.Second}))
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	c.SetTimeout(time.Second)
	return c.Bind(s.AdminDN, s.AdminPassword)
}

// Stop terminates slapd and waits for it to exit; its data stays for Start.
func (s *Slapd) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd, s.exited = nil, nil
}

// freePorts reserves n distinct loopback ports by listening on them at once,
// then frees them for slapd, which needs numbers it can reuse on restart.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// writeTLSFiles writes a fresh CA and a server certificate it signed for
// 127.0.0.1 and localhost.
func writeTLSFiles(t testing.TB, caFile, certFile, keyFile string) {
	t.Helper()
	if _, err := testcert.Write(caFile, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
}

// SyncBuffer is a bytes.Buffer safe for one writer goroutine (a child
// process's output, a logger) and a reading test.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Clone(b.buf.String())
}
