package testenv

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CA is a certificate authority a test mints for itself, to run real TLS on loopback: the
// servers it starts present certificates the CA signed, and the clients trust CertFile.
type CA struct {
	// CertFile is the CA's certificate, PEM, for clients' trust stores.
	CertFile string

	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
}

// NewCA mints a CA valid for an hour, its files under t.TempDir().
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "MueJam Edge test CA"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{cert: cert, key: key, dir: t.TempDir()}
	ca.CertFile = ca.write(t, "ca.pem", "CERTIFICATE", der)
	return ca
}

// Issue signs a server certificate for hosts (DNS names or IP addresses) and returns its
// certificate and key files, PEM.
func (ca *CA) Issue(t testing.TB, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	name := serial.Text(36)
	return ca.write(t, name+".pem", "CERTIFICATE", der), ca.write(t, name+"-key.pem", "EC PRIVATE KEY", keyDER)
}

func (ca *CA) write(t testing.TB, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(ca.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// StartValkeyTLS starts a private Valkey (or Redis) server that speaks only TLS, with a
// certificate from ca for 127.0.0.1, and that requires AUTH as user (an ACL user with every
// permission; the default user is disabled) with password, as ElastiCache with in-transit
// encryption and RBAC does. It returns the server's address; the server is killed when the
// test ends.
func StartValkeyTLS(t testing.TB, ca *CA, user, password string) string {
	t.Helper()
	bin := lookBin(t, "valkey-server", "redis-server")
	certFile, keyFile := ca.Issue(t, "127.0.0.1", "localhost")
	addr := FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	conf := filepath.Join(dir, "valkey.conf")
	text := "port 0\ntls-port " + port + "\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir " + dir +
		"\ntls-cert-file " + certFile + "\ntls-key-file " + keyFile + "\ntls-ca-cert-file " + ca.CertFile +
		"\ntls-auth-clients no\nuser default off\nuser " + user + " on >" + password + " ~* &* +@all\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(ca.CertFile)
	pool.AppendCertsFromPEM(pem)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if tlsPing(addr, &tls.Config{RootCAs: pool}, user, password) {
			return addr
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s with TLS on %s did not answer AUTH and PING within 10s", bin, addr)
	return ""
}

// tlsPing reports whether a TLS server on addr accepts AUTH user password and answers PING.
func tlsPing(addr string, cfg *tls.Config, user, password string) bool {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, cfg)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(encodeCommand("AUTH", user, password) + encodeCommand("PING"))); err != nil {
		return false
	}
	r := bufio.NewReader(c)
	auth, err1 := readReply(r)
	pong, err2 := readReply(r)
	return err1 == nil && err2 == nil && auth == "OK" && pong == "PONG"
}

// encodeCommand encodes a command as a RESP array of bulk strings.
func encodeCommand(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}
