package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/tandemdb/tandem"
)

// tlsFlags are the TLS flags shared by every command that talks to nodes.
type tlsFlags struct{ cert, key, ca *string }

func addTLSFlags(fs interface {
	String(name, value, usage string) *string
}) tlsFlags {
	return tlsFlags{
		cert: fs.String("tls-cert", "", "PEM certificate of this node or client (enables TLS)"),
		key:  fs.String("tls-key", "", "PEM private key for --tls-cert"),
		ca:   fs.String("tls-ca", "", "PEM CA certificate (required with --tls-cert): peers and clients must present a certificate it signed,\nand servers are checked against it"),
	}
}

func (t tlsFlags) enabled() bool { return *t.cert != "" || *t.key != "" || *t.ca != "" }

func runNode(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) error {
	fs := newFlags("node", "--id N --addr HOST:PORT --data DIR [--join HOST:PORT,...]",
		"Runs a cluster node until interrupted (SIGINT or SIGTERM hand leadership over first).\n"+
			"With an empty --data directory and no --join it bootstraps a new cluster; with --join it asks\n"+
			"the named nodes to add it (as a learner, promoted to voter once caught up); a restart reuses\n"+
			"the --data directory and ignores --join. A node that is removed from the cluster\n"+
			"(tandem cluster remove) stops by itself and exits with status 0, keeping its --data; one the\n"+
			"cluster refuses to add (its --id or --addr is taken, or its ID was removed) exits with status 3,\n"+
			"which a supervisor should not restart it for.", stderr)
	id := fs.Uint64("id", 0, "node ID, unique in the cluster, not 0 (required)")
	addr := fs.String("addr", "127.0.0.1:9001", "address to listen on for clients and peers")
	advertise := fs.String("advertise", "", "address others use to reach this node (default: --addr)")
	data := fs.String("data", "", "data directory (required)")
	join := fs.String("join", "", "comma-separated addresses of existing cluster nodes to join")
	snapEvery := fs.Uint64("snapshot-every", 10000, "applied entries between snapshots (log compaction)")
	txIdle := fs.Duration("tx-idle-timeout", 30*time.Second, "how long a transaction may stay without a statement before the node ends it")
	maxEntry := fs.Int("max-entry-mib", 16, "largest change one write or transaction may make, in MiB of its log entry (1 to 1024);\nlarger ones fail with SQLITE_TOOBIG (each entry stalls the Raft loop while it is synced; an update\nin place carries old and new value: 31 allows changing values up to the 15 MiB maximum)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	tf := addTLSFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *id == 0 {
		return usageError{"--id is required and must not be 0"}
	}
	if *data == "" {
		return usageError{"--data is required"}
	}
	if *txIdle <= 0 {
		return usageError{"--tx-idle-timeout must be positive"}
	}
	if *maxEntry < 1 || *maxEntry > 1024 {
		return usageError{"--max-entry-mib must be between 1 and 1024"}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError{fmt.Sprintf("--log-level: %v", err)}
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	opts := []tandem.Option{tandem.WithID(*id), tandem.WithAddress(*addr), tandem.WithLogger(logger), tandem.WithSnapshotEvery(*snapEvery),
		tandem.WithTxIdleTimeout(*txIdle), tandem.WithMaxEntryMiB(*maxEntry)}
	if *advertise != "" {
		opts = append(opts, tandem.WithAdvertise(*advertise))
	}
	if peers := splitList(*join); len(peers) > 0 {
		opts = append(opts, tandem.WithCluster(peers...))
	}
	if tf.enabled() {
		srv, cli, err := tandem.LoadTLS(*tf.cert, *tf.key, *tf.ca)
		if err != nil {
			return err
		}
		opts = append(opts, tandem.WithTLS(srv, cli))
	}
	node, err := tandem.New(*data, opts...)
	if err != nil {
		return err
	}
	logger.Info("serving", "id", node.ID(), "addr", node.Addr(), "join", strings.Join(splitList(*join), ","))
	select {
	case <-ctx.Done():
	case <-node.Done():
		// The node closed itself: it was removed from the cluster. That is the end of its
		// job, not a failure a supervisor should restart it for (a restart would find the
		// removal again and stop at once).
		if errors.Is(node.Err(), tandem.ErrRemoved) {
			logger.Warn("this node was removed from the cluster and has stopped; its data directory is kept",
				"data", *data, "to rejoin", "start it with an empty --data, a new --id and --join")
			return nil
		}
		if errors.Is(node.Err(), tandem.ErrJoinRefused) {
			// Starting it again as it is would be refused again: a supervisor should not.
			return exitError{code: exitRefused, err: node.Err()}
		}
		return node.Err()
	}
	logger.Info("shutting down")
	hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := node.Handover(hctx); err != nil {
		logger.Warn("leadership hand-over failed", "err", err)
	}
	cancel()
	return node.Close()
}
