package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tandemdb/tandem/internal/tlsconfig"
)

func runCert(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("cert", "--out DIR [--nodes n1,n2,n3] [--hosts 127.0.0.1,localhost]",
		"Makes, for each name, NAME.pem and NAME-key.pem signed by the CA in --out (ca.pem, ca-key.pem),\n"+
			"making the CA first if there is none: ECDSA P-256 keys, usable as server and client certificates\n"+
			"(mutual TLS). Run it again with new names (--nodes n4) for a node that joins later: its certificate\n"+
			"is signed by the same CA. Existing files are never overwritten. Start nodes with\n"+
			"--tls-cert NAME.pem --tls-key NAME-key.pem --tls-ca ca.pem; keep ca-key.pem off the nodes.", stderr)
	out := fs.String("out", "", "directory to write the files to (required)")
	nodes := fs.String("nodes", "n1,n2,n3,client", "comma-separated certificate names")
	hosts := fs.String("hosts", "127.0.0.1,localhost", "comma-separated host names and IP addresses the certificates are valid for")
	valid := fs.Duration("valid", 365*24*time.Hour, "validity period of the node and client certificates (the CA's: ten times as long, at least 10 years)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *out == "" {
		return usageError{"--out is required"}
	}
	if *valid <= 0 {
		return usageError{fmt.Sprintf("--valid must be positive, not %v", *valid)}
	}
	names := splitList(*nodes)
	if len(names) == 0 {
		return usageError{"--nodes names no certificate"}
	}
	newCA, err := tlsconfig.WriteFiles(*out, names, splitList(*hosts), *valid)
	if err != nil {
		return err
	}
	if newCA {
		fmt.Fprintf(stdout, "wrote a new CA (ca.pem, ca-key.pem) and certificates for %s in %s\n", strings.Join(names, ", "), *out)
	} else {
		fmt.Fprintf(stdout, "wrote certificates for %s in %s, signed by its CA (ca.pem)\n", strings.Join(names, ", "), *out)
	}
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
