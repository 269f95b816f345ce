package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// KDC is a throwaway MIT Kerberos realm: a real krb5kdc on loopback with its
// own database, config files and credential cache under t.TempDir().
type KDC struct {
	Realm    string
	KDCAddr  string // 127.0.0.1:port, TCP and UDP
	Krb5Conf string // krb5.conf for clients (kinit, curl, gokrb5)
	Keytab   string // service keytab holding HTTP/localhost only
	User     string
	Password string

	dir     string
	kdcConf string
	cmd     *exec.Cmd
	exited  chan struct{}
	log     *bytes.Buffer // krb5kdc's stderr, shown when it fails to start
}

// kdcEnctypes are the enctypes the realm issues and the keytab holds: the
// RFC 3962 AES types, MIT's default supported_enctypes and what Active
// Directory issues. gokrb5 8.4.4 also handles the RFC 8009 aes-sha2 types
// (tried: a realm with only those passes the same tests with gokrb5 and
// curl), but pinning keeps a future MIT default from changing what is tested.
const kdcEnctypes = "aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96"

// StartKDC creates realm OPS.TEST with user alice and service principal
// HTTP/localhost, exports the service key to Keytab, starts krb5kdc and waits
// until it answers. The test fails when MIT Kerberos is not installed
// (Require).
func StartKDC(t testing.TB) *KDC {
	t.Helper()
	for _, bin := range []string{"/usr/sbin/krb5kdc", "/usr/sbin/kdb5_util", "/usr/sbin/kadmin.local"} {
		_, err := os.Stat(bin)
		Require(t, err == nil, "MIT Kerberos ("+bin+")", "apt-get install --no-install-recommends krb5-kdc krb5-admin-server krb5-user")
	}
	dir := t.TempDir()
	k := &KDC{
		Realm: "OPS.TEST", User: "alice", Password: "alice-Secret-1",
		dir: dir, Keytab: filepath.Join(dir, "http.keytab"),
		Krb5Conf: filepath.Join(dir, "krb5.conf"), kdcConf: filepath.Join(dir, "kdc.conf"),
	}
	// The port is picked free and then handed to krb5kdc, so another process
	// can take it in between; on that rare failure try a fresh port.
	var err error
	for range 3 {
		if err = k.configure(); err != nil {
			t.Fatal(err)
		}
		if k.dbMissing() {
			k.createDB(t)
		}
		if err = k.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.stop)
	return k
}

// Env is the environment for Kerberos child processes (kinit, klist, curl):
// this realm's config and a credential cache private to the test.
func (k *KDC) Env() []string {
	return append(os.Environ(),
		"KRB5_CONFIG="+k.Krb5Conf,
		"KRB5_KDC_PROFILE="+k.kdcConf,
		"KRB5CCNAME=FILE:"+filepath.Join(k.dir, "ccache"),
	)
}

// Kinit gets alice a TGT in the private credential cache, password on stdin.
func (k *KDC) Kinit(t testing.TB) {
	t.Helper()
	_, err := exec.LookPath("kinit")
	Require(t, err == nil, "kinit", "apt-get install --no-install-recommends krb5-user")
	cmd := exec.Command("kinit", k.User+"@"+k.Realm)
	cmd.Env = k.Env()
	cmd.Stdin = strings.NewReader(k.Password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kinit %s: %v\n%s", k.User, err, out)
	}
}

// AddService adds a service principal with a random key, for tests that need
// a ticket the keytab cannot decrypt. Its key is not exported.
func (k *KDC) AddService(t testing.TB, principal string) {
	t.Helper()
	k.kadmin(t, "addprinc -randkey -e "+strconv.Quote(enctypeList())+" "+principal)
}

func (k *KDC) configure() error {
	port, err := freeTCPUDPPort()
	if err != nil {
		return fmt.Errorf("kdc port: %w", err)
	}
	k.KDCAddr = "127.0.0.1:" + strconv.Itoa(port)
	kdcConf := fmt.Sprintf(`[kdcdefaults]
	kdc_listen = %[2]s
	kdc_tcp_listen = %[2]s

[realms]
	%[1]s = {
		database_name = %[3]s/principal
		key_stash_file = %[3]s/stash
		acl_file = %[3]s/kadm5.acl
		master_key_type = aes256-cts-hmac-sha1-96
		supported_enctypes = %[4]s
		max_life = 1h
		max_renewable_life = 0
	}

[logging]
	kdc = FILE:%[3]s/kdc.log
	admin_server = FILE:%[3]s/kadmin.log
	default = FILE:%[3]s/krb5.log
`, k.Realm, k.KDCAddr, k.dir, enctypeList())
	// udp_preference_limit = 1 makes every client use TCP, which also
	// exercises the TCP listener; rdns and dns_canonicalize_hostname off so
	// "localhost" stays HTTP/localhost whatever the resolver says;
	// ignore_acceptor_hostname lets an acceptor use any key in its keytab.
	krb5Conf := fmt.Sprintf(`[libdefaults]
	default_realm = %[1]s
	dns_lookup_kdc = false
	dns_lookup_realm = false
	dns_canonicalize_hostname = false
	rdns = false
	ignore_acceptor_hostname = true
	udp_preference_limit = 1
	ticket_lifetime = 1h
	forwardable = false
	default_tkt_enctypes = %[3]s
	default_tgs_enctypes = %[3]s
	permitted_enctypes = %[3]s

[realms]
	%[1]s = {
		kdc = %[2]s
	}

[domain_realm]
	localhost = %[1]s
	.localhost = %[1]s
`, k.Realm, k.KDCAddr, kdcEnctypes)
	if err := os.WriteFile(k.kdcConf, []byte(kdcConf), 0o600); err != nil {
		return err
	}
	return os.WriteFile(k.Krb5Conf, []byte(krb5Conf), 0o600)
}

// enctypeList is kdcEnctypes with the :normal salt kadmin and kdc.conf want.
func enctypeList() string {
	var s []string
	for _, e := range strings.Fields(kdcEnctypes) {
		s = append(s, e+":normal")
	}
	return strings.Join(s, " ")
}

func (k *KDC) dbMissing() bool {
	_, err := os.Stat(filepath.Join(k.dir, "principal"))
	return err != nil
}

func (k *KDC) createDB(t testing.TB) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(k.dir, "kadm5.acl"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	k.run(t, "/usr/sbin/kdb5_util", "create", "-s", "-r", k.Realm, "-P", "master-Secret-1")
	k.kadmin(t, fmt.Sprintf("addprinc -pw %s %s", k.Password, k.User))
	k.AddService(t, "HTTP/localhost")
	k.kadmin(t, "ktadd -k "+k.Keytab+" -e "+strconv.Quote(enctypeList())+" HTTP/localhost")
}

func (k *KDC) kadmin(t testing.TB, query string) {
	t.Helper()
	k.run(t, "/usr/sbin/kadmin.local", "-r", k.Realm, "-q", query)
}

func (k *KDC) run(t testing.TB, name string, args ...string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Env = k.Env()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	// kadmin.local exits 0 when its query fails; com_err messages then say
	// "... while <doing what>" on stderr.
	if err == nil && strings.Contains(stderr.String(), " while ") {
		err = fmt.Errorf("%s reported an error", filepath.Base(name))
	}
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
}

// start runs krb5kdc in the foreground and waits until it accepts TCP
// connections. It returns an error (not a test failure) when the KDC exits
// early, typically because the port was taken, so the caller can retry.
func (k *KDC) start() error {
	k.log = new(bytes.Buffer)
	cmd := exec.Command("/usr/sbin/krb5kdc", "-n", "-r", k.Realm)
	cmd.Env = k.Env()
	cmd.Stdout, cmd.Stderr = k.log, k.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start krb5kdc: %w", err)
	}
	k.cmd, k.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(k.exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-k.exited:
			logTail, _ := os.ReadFile(filepath.Join(k.dir, "kdc.log"))
			return fmt.Errorf("krb5kdc exited on %s: %s\n%s", k.KDCAddr, k.log, logTail)
		default:
		}
		if c, err := net.DialTimeout("tcp", k.KDCAddr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	k.stop()
	return fmt.Errorf("krb5kdc not listening on %s after 10s: %s", k.KDCAddr, k.log)
}

func (k *KDC) stop() {
	if k.cmd == nil || k.cmd.Process == nil {
		return
	}
	_ = k.cmd.Process.Kill()
	<-k.exited
	k.cmd = nil
}

// freeTCPUDPPort finds a loopback port free for both TCP and UDP, as the
// KDC listens on both.
func freeTCPUDPPort() (int, error) {
	var err error
	for range 20 {
		var l net.Listener
		l, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			continue
		}
		port := l.Addr().(*net.TCPAddr).Port
		var u net.PacketConn
		u, err = net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err != nil {
			continue
		}
		_ = u.Close()
		return port, nil
	}
	return 0, err
}
