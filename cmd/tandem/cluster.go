package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tandemdb/tandem"
	"github.com/tandemdb/tandem/client"
)

// clientFlags are the flags of every command that talks to a running cluster.
type clientFlags struct {
	cluster *string
	timeout *time.Duration
	tls     tlsFlags
}

func addClientFlags(fs interface {
	String(name, value, usage string) *string
	Duration(name string, value time.Duration, usage string) *time.Duration
}) clientFlags {
	return clientFlags{
		cluster: fs.String("cluster", "127.0.0.1:9001", "comma-separated node addresses (any of them; the leader is found)"),
		timeout: fs.Duration("timeout", 10*time.Second, "time limit for the whole command"),
		tls:     addTLSFlags(fs),
	}
}

// connect opens a client on the cluster. Bad flags are usage errors (exit status 2); an
// unreachable cluster is an ordinary error (status 1).
func (f clientFlags) connect(ctx context.Context) (*client.Client, error) {
	addrs := splitList(*f.cluster)
	if len(addrs) == 0 {
		return nil, usageError{"--cluster names no node"}
	}
	if *f.timeout <= 0 {
		return nil, usageError{fmt.Sprintf("--timeout must be positive, not %v", *f.timeout)}
	}
	for _, a := range addrs {
		if err := client.CheckAddr(a); err != nil {
			return nil, usageError{"--cluster: " + err.Error()}
		}
	}
	var tc *tls.Config
	if f.tls.enabled() {
		_, cli, err := tandem.LoadTLS(*f.tls.cert, *f.tls.key, *f.tls.ca)
		if err != nil {
			return nil, usageError{err.Error()}
		}
		tc = cli
	}
	c, err := client.New(ctx, client.Config{Addrs: addrs, TLS: tc, Name: "tandem-cli"})
	if err != nil {
		return nil, fmt.Errorf("cannot reach the cluster at %s: %w", *f.cluster, err)
	}
	return c, nil
}

// memberRow is one line of `tandem cluster list`.
type memberRow struct {
	ID      uint64  `json:"id"`
	Address string  `json:"address"`
	Role    string  `json:"role"`
	Leader  bool    `json:"leader"`
	Applied *uint64 `json:"applied_index"` // null: the node did not answer
	Healthy bool    `json:"healthy"`
	Problem string  `json:"problem,omitempty"`
}

func runCluster(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("cluster", "list|health|remove ID|transfer [ID] [flags]",
		"list      prints every member: id, address, role, whether it leads, its applied index and health\n"+
			"          (each node is asked for its own status; an unreachable node shows as unhealthy).\n"+
			"health    asks each node that --cluster names (not the other members) for its own status and\n"+
			"          exits 0 when every one answers, is healthy (not diverged, not removed) and knows a\n"+
			"          leader, 1 otherwise: a health check for a supervisor, e.g. with --cluster 127.0.0.1:9001\n"+
			"          --timeout 3s inside a node's container.\n"+
			"remove ID removes a node from the cluster configuration.\n"+
			"transfer  moves leadership to node ID, or to the most up-to-date voter without ID.", stderr)
	cf := addClientFlags(fs)
	format := fs.String("format", "table", "list and health output: table or json")
	if len(args) == 0 {
		fs.Usage()
		return usageError{"a subcommand is required: list, health, remove or transfer"}
	}
	sub := args[0]
	if sub == "-h" || sub == "--help" {
		fs.Usage()
		return nil
	}
	var rest []string
	if strings.HasPrefix(sub, "-") {
		// Flags first (tandem cluster --format json list): the subcommand is the first
		// argument that is not a flag.
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			fs.Usage()
			return usageError{"a subcommand is required: list, health, remove or transfer"}
		}
		sub, rest = fs.Arg(0), fs.Args()[1:]
	} else {
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		rest = fs.Args()
	}
	if *format != "table" && *format != "json" {
		return usageError{"--format must be table or json"}
	}
	ctx, cancel := context.WithTimeout(ctx, *cf.timeout)
	defer cancel()
	var id uint64
	switch sub {
	case "list", "health":
		if len(rest) != 0 {
			return usageError{sub + " takes no arguments"}
		}
	case "remove", "transfer":
		if len(rest) > 1 || (sub == "remove" && len(rest) != 1) {
			return usageError{sub + " takes one node ID"}
		}
		if len(rest) == 1 {
			v, err := strconv.ParseUint(rest[0], 10, 64)
			if err != nil || v == 0 {
				return usageError{fmt.Sprintf("%q is not a node ID", rest[0])}
			}
			id = v
		}
	default:
		return usageError{fmt.Sprintf("unknown subcommand %q: use list, health, remove or transfer", sub)}
	}
	c, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	switch sub {
	case "health":
		return checkHealth(ctx, c, splitList(*cf.cluster), *format == "json", stdout)
	case "remove":
		if err := c.Remove(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed node %d (a running node stops by itself once it learns of it)\n", id)
		return nil
	case "transfer":
		li, err := c.Transfer(ctx, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "leader is now node %d at %s (term %d)\n", li.ID, li.Addr, li.Term)
		return nil
	}
	rows, err := listMembers(ctx, c)
	if err != nil {
		return err
	}
	if w := quorumWarning(rows); w != "" {
		fmt.Fprintln(stderr, "tandem cluster: warning:", w)
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tROLE\tLEADER\tAPPLIED\tHEALTHY\tPROBLEM")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%v\t%s\t%v\t%s\n", r.ID, r.Address, r.Role, r.Leader, r.appliedText(), r.Healthy, r.Problem)
	}
	return tw.Flush()
}

// healthRow is one line of `tandem cluster health`.
type healthRow struct {
	Address string  `json:"address"`
	ID      uint64  `json:"id,omitempty"`
	Leader  uint64  `json:"leader,omitempty"`
	Applied *uint64 `json:"applied_index"` // null: the node did not answer
	Healthy bool    `json:"healthy"`
	Problem string  `json:"problem,omitempty"`
}

// errUnhealthy is the failure of `tandem cluster health` (exit status 1), said after the
// table.
var errUnhealthy = errors.New("not every node is healthy")

// checkHealth asks each of addrs for its own status.
func checkHealth(ctx context.Context, c *client.Client, addrs []string, asJSON bool, stdout io.Writer) error {
	rows := make([]healthRow, len(addrs))
	done := make(chan struct{}, len(addrs))
	for i, a := range addrs {
		rows[i].Address = a
		go func() {
			defer func() { done <- struct{}{} }()
			st, err := c.Status(ctx, a)
			r := &rows[i]
			switch {
			case err != nil:
				r.Problem = "unreachable: " + err.Error()
			case !st.Healthy:
				r.ID, r.Leader, r.Applied, r.Problem = st.ID, st.Leader, &st.Applied, st.Problem
			case st.Leader == 0:
				r.ID, r.Applied, r.Problem = st.ID, &st.Applied, "knows no leader (an election, or cut off from a majority)"
			default:
				r.ID, r.Leader, r.Applied, r.Healthy = st.ID, st.Leader, &st.Applied, true
			}
		}()
	}
	for range addrs {
		<-done
	}
	all := true
	for _, r := range rows {
		all = all && r.Healthy
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ADDRESS\tID\tLEADER\tAPPLIED\tHEALTHY\tPROBLEM")
		for _, r := range rows {
			applied := "-"
			if r.Applied != nil {
				applied = strconv.FormatUint(*r.Applied, 10)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%v\t%s\n", r.Address, r.ID, r.Leader, applied, r.Healthy, r.Problem)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if !all {
		return errUnhealthy
	}
	return nil
}

// appliedText is the applied index for a table, "-" for a node that did not answer.
func (r memberRow) appliedText() string {
	if r.Applied == nil {
		return "-"
	}
	return strconv.FormatUint(*r.Applied, 10)
}

// quorumWarning says what is wrong with the cluster as a whole, if anything: no leader, or
// no majority of the voters answering and healthy.
func quorumWarning(rows []memberRow) string {
	voters, up, leader := 0, 0, false
	for _, r := range rows {
		leader = leader || r.Leader
		if r.Role != "voter" {
			continue
		}
		voters++
		if r.Healthy {
			up++
		}
	}
	switch {
	case voters > 0 && up <= voters/2:
		return fmt.Sprintf("only %d of %d voters answer and are healthy: no quorum, the cluster takes no writes", up, voters)
	case !leader:
		return "no leader (an election may be under way): writes and linearizable reads wait for one"
	}
	return ""
}

// listMembers asks the cluster for its members and each member for its own status.
func listMembers(ctx context.Context, c *client.Client) ([]memberRow, error) {
	ci, err := c.Cluster(ctx)
	if err != nil {
		return nil, err
	}
	rows := make([]memberRow, len(ci.Members))
	done := make(chan struct{}, len(ci.Members))
	for i, m := range ci.Members {
		rows[i] = memberRow{ID: m.ID, Address: m.Addr, Role: m.Role, Leader: m.ID == ci.LeaderID && ci.LeaderID != 0}
		go func() {
			defer func() { done <- struct{}{} }()
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			st, err := c.Status(sctx, m.Addr)
			if err != nil {
				rows[i].Problem = "unreachable: " + err.Error()
				return
			}
			rows[i].Applied, rows[i].Healthy, rows[i].Problem = &st.Applied, st.Healthy, st.Problem
		}()
	}
	for range ci.Members {
		<-done
	}
	return rows, nil
}
