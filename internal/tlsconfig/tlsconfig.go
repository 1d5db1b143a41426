// Package tlsconfig builds Tandem's TLS configurations and makes the keys and certificates
// that `tandem cert` writes.
//
// One certificate serves a node both as a server (clients and peers dial it) and as a client
// (it dials its peers), so every certificate carries both extended key usages. Keys are
// ECDSA P-256 by default: a handshake costs well under a millisecond of CPU, where RSA-4096
// costs several (see DESIGN.md §2). TLS 1.3 only, mutual authentication (Load requires the
// CA; Build without one is encryption only, for embedders that verify otherwise), and
// session tickets on both sides so reconnects resume instead of doing a full handshake.
package tlsconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Files names the PEM files of a node's TLS identity.
type Files struct {
	Cert string // certificate chain of this node
	Key  string // private key of this node
	CA   string // CA certificate that signs every node and client (required)
}

// Enabled reports whether any TLS file was named.
func (f Files) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// Configs holds the server side and the client side built from one identity.
type Configs struct {
	Server *tls.Config
	Client *tls.Config
}

// Load reads the files and builds both configurations.
func Load(f Files) (Configs, error) {
	if f.Cert == "" || f.Key == "" {
		return Configs{}, errors.New("tls: both a certificate and a key are needed (--tls-cert, --tls-key)")
	}
	if f.CA == "" {
		// Without a CA a node would accept any client and any peer, and its own dials would
		// check no server: one node started so opens a mutual-TLS cluster to everyone.
		return Configs{}, errors.New("tls: a CA certificate is needed too (--tls-ca): without it no peer or client could be verified")
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return Configs{}, fmt.Errorf("tls: load key pair %s, %s: %w", f.Cert, f.Key, err)
	}
	// Every peer would refuse it, with a less clear message and only once it is dialled.
	if now := time.Now(); cert.Leaf != nil && now.After(cert.Leaf.NotAfter) {
		return Configs{}, fmt.Errorf("tls: certificate %s expired on %s", f.Cert, cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	} else if cert.Leaf != nil && now.Before(cert.Leaf.NotBefore) {
		return Configs{}, fmt.Errorf("tls: certificate %s is not valid before %s (is this machine's clock right?)", f.Cert, cert.Leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return Configs{}, fmt.Errorf("tls: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return Configs{}, fmt.Errorf("tls: %s holds no PEM certificate (a key file given as the CA?)", f.CA)
	}
	return Build(cert, pool), nil
}

// Build makes the server and client configurations for a certificate and an optional CA pool.
// With a pool, the server requires and verifies client certificates and the client verifies
// servers against it; without one, the client does not verify (plain encryption only).
func Build(cert tls.Certificate, pool *x509.CertPool) Configs {
	srv := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
	}
	cli := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{cert},
		ClientSessionCache: tls.NewLRUClientSessionCache(256),
	}
	if pool != nil {
		srv.ClientCAs = pool
		srv.ClientAuth = tls.RequireAndVerifyClientCert
		cli.RootCAs = pool
	} else {
		cli.InsecureSkipVerify = true //nolint:gosec // no CA given: encryption without verification, documented.
	}
	return Configs{Server: srv, Client: cli}
}

// Authority is a CA key pair that signs node certificates.
type Authority struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
}

// NewAuthority makes a self-signed ECDSA P-256 CA valid for the given duration.
func NewAuthority(name string, valid time.Duration) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(valid),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Authority{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Issue makes a node certificate for the given host names and IP addresses, usable as both
// server and client. It returns the certificate and key in PEM.
func (a *Authority) Issue(name string, hosts []string, valid time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("node key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(valid),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, &key.PublicKey, a.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("node certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// caLifetime is how long the CA that WriteFiles makes is valid, for certificates valid for
// valid: ten times as long and at least ten years, so that the CA does not expire with the
// certificates it signed.
func caLifetime(valid time.Duration) time.Duration {
	return max(10*valid, 10*365*24*time.Hour)
}

// LoadAuthority reads a CA written by WriteFiles (ca.pem, ca-key.pem in dir).
func LoadAuthority(dir string) (*Authority, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", filepath.Join(dir, "ca.pem"))
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "ca.pem"), err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", filepath.Join(dir, "ca.pem"))
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "EC PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PEM EC private key", filepath.Join(dir, "ca-key.pem"))
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "ca-key.pem"), err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s does not belong to %s", filepath.Join(dir, "ca-key.pem"), filepath.Join(dir, "ca.pem"))
	}
	return &Authority{Cert: cert, Key: key, CertPEM: certPEM}, nil
}

// WriteFiles writes one certificate for each named node into dir, NAME.pem and NAME-key.pem,
// signed by the CA in dir (ca.pem, ca-key.pem); without one it makes the CA first. It
// reports whether it made a CA. Existing files are not overwritten.
func WriteFiles(dir string, names []string, hosts []string, valid time.Duration) (newCA bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("create %s: %w", dir, err)
	}
	files := map[string][]byte{}
	_, certErr := os.Stat(filepath.Join(dir, "ca.pem"))
	_, keyErr := os.Stat(filepath.Join(dir, "ca-key.pem"))
	var ca *Authority
	switch {
	case certErr == nil && keyErr == nil:
		if ca, err = LoadAuthority(dir); err != nil {
			return false, fmt.Errorf("the CA in %s: %w", dir, err)
		}
	case certErr == nil || keyErr == nil:
		return false, fmt.Errorf("%s holds only one of ca.pem and ca-key.pem: a CA needs both", dir)
	default:
		if ca, err = NewAuthority("tandem CA", caLifetime(valid)); err != nil {
			return false, err
		}
		caKey, err := x509.MarshalECPrivateKey(ca.Key)
		if err != nil {
			return false, err
		}
		files["ca.pem"] = ca.CertPEM
		files["ca-key.pem"] = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: caKey})
		newCA = true
	}
	if time.Until(ca.Cert.NotAfter) < valid {
		return false, fmt.Errorf("the CA in %s expires on %s, before certificates valid for %v would: "+
			"make a new CA in another directory (and roll it out to every node)", dir, ca.Cert.NotAfter.Format(time.DateOnly), valid)
	}
	for _, n := range names {
		c, k, err := ca.Issue(n, hosts, valid)
		if err != nil {
			return false, err
		}
		files[n+".pem"] = c
		files[n+"-key.pem"] = k
	}
	for name := range files {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return false, fmt.Errorf("%s already exists: refusing to overwrite", filepath.Join(dir, name))
		}
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return false, fmt.Errorf("write %s: %w", name, err)
		}
	}
	return newCA, nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n, nil
}
