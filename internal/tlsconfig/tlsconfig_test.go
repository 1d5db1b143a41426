package tlsconfig

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMutualTLSAndResumption checks that two identities from one CA authenticate each other,
// that an identity from another CA is refused, and that a second connection resumes the session.
func TestMutualTLSAndResumption(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteFiles(dir, []string{"n1", "n2"}, []string{"127.0.0.1", "localhost"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteFiles(dir, []string{"n1"}, nil, time.Hour); err == nil {
		t.Fatal("WriteFiles overwrote existing files")
	}
	load := func(name, caDir string) Configs {
		c, err := Load(Files{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem"), CA: filepath.Join(caDir, "ca.pem")})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	srv, cli := load("n1", dir), load("n2", dir)

	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv.Server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	dial := func(cfg *tls.Config) (tls.ConnectionState, error) {
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer c.Close()
		// A round trip makes sure the client has read the session ticket.
		if _, err := c.Write([]byte("x")); err != nil {
			return tls.ConnectionState{}, err
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			return tls.ConnectionState{}, err
		}
		return c.ConnectionState(), nil
	}
	st, err := dial(cli.Client)
	if err != nil {
		t.Fatalf("first handshake: %v", err)
	}
	if st.Version != tls.VersionTLS13 {
		t.Fatalf("version %x, want TLS 1.3", st.Version)
	}
	st, err = dial(cli.Client)
	if err != nil {
		t.Fatalf("second handshake: %v", err)
	}
	if !st.DidResume {
		t.Fatal("second connection did not resume the TLS session")
	}

	other := t.TempDir()
	if _, err := WriteFiles(other, []string{"x"}, []string{"127.0.0.1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	stranger, err := Load(Files{Cert: filepath.Join(other, "x.pem"), Key: filepath.Join(other, "x-key.pem"), CA: filepath.Join(other, "ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(stranger.Client); err == nil {
		t.Fatal("a certificate from another CA was accepted")
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(Files{Cert: "x"}); err == nil {
		t.Fatal("missing key accepted")
	}
	if _, err := Load(Files{Cert: "/nonexistent.pem", Key: "/nonexistent-key.pem", CA: "/nonexistent-ca.pem"}); err == nil {
		t.Fatal("missing files accepted")
	}
	// A certificate and key without a CA: the node would accept any client and verify no
	// server, and one node started so would open a mutual-TLS cluster to everyone.
	if _, err := Load(Files{Cert: "n.pem", Key: "n-key.pem"}); err == nil || !strings.Contains(err.Error(), "--tls-ca") {
		t.Fatalf("no CA: %v, want an error naming --tls-ca", err)
	}
}

// The CA outlives the certificates it signs (it expired with them before).
func TestCAOutlivesItsCertificates(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteFiles(dir, []string{"n"}, []string{"127.0.0.1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	notAfter := func(name string) time.Time {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM block", name)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c.NotAfter
	}
	ca, node := notAfter("ca.pem"), notAfter("n.pem")
	if ca.Before(time.Now().Add(9 * 365 * 24 * time.Hour)) {
		t.Fatalf("CA valid until %v, node certificate until %v: want the CA to last about ten years", ca, node)
	}
}

// An expired certificate is refused when it is loaded, not when a peer first refuses it.
func TestLoadRefusesAnExpiredCertificate(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteFiles(dir, []string{"n"}, []string{"127.0.0.1"}, time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	_, err := Load(Files{Cert: filepath.Join(dir, "n.pem"), Key: filepath.Join(dir, "n-key.pem"), CA: filepath.Join(dir, "ca.pem")})
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired certificate: %v, want an error saying it expired", err)
	}
}

// A second WriteFiles in the same directory signs the new names with the CA already there
// (a node added to a cluster needs a certificate its peers trust), and refuses a CA that is
// incomplete or expires too soon.
func TestWriteFilesWithExistingCA(t *testing.T) {
	dir := t.TempDir()
	if newCA, err := WriteFiles(dir, []string{"n1"}, []string{"127.0.0.1"}, time.Hour); err != nil || !newCA {
		t.Fatalf("first WriteFiles: new CA %v, %v", newCA, err)
	}
	caBefore, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if newCA, err := WriteFiles(dir, []string{"n4"}, []string{"127.0.0.1"}, time.Hour); err != nil || newCA {
		t.Fatalf("WriteFiles with a CA in the directory: new CA %v, %v", newCA, err)
	}
	caAfter, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil || !bytes.Equal(caBefore, caAfter) {
		t.Fatalf("ca.pem changed (%v)", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caAfter)
	for _, name := range []string{"n1", "n4"} {
		b, err := os.ReadFile(filepath.Join(dir, name+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("%s does not verify against the CA: %v", name, err)
		}
	}

	if _, err := WriteFiles(dir, []string{"n5"}, nil, 20*365*24*time.Hour); err == nil || !strings.Contains(err.Error(), "expires") {
		t.Fatalf("certificates outliving the CA: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteFiles(dir, []string{"n6"}, nil, time.Hour); err == nil || !strings.Contains(err.Error(), "only one of") {
		t.Fatalf("a CA without its key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "n6.pem")); err == nil {
		t.Fatal("a certificate was written without a usable CA")
	}
}
