package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
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
	fs := newFlags("cluster", "list|remove ID|transfer [ID] [flags]",
		"list      prints every member: id, address, role, whether it leads, its applied index and health\n"+
			"          (each node is asked for its own status; an unreachable node shows as unhealthy).\n"+
			"remove ID removes a node from the cluster configuration.\n"+
			"transfer  moves leadership to node ID, or to the most up-to-date voter without ID.", stderr)
	cf := addClientFlags(fs)
	format := fs.String("format", "table", "list output: table or json")
	if len(args) == 0 {
		fs.Usage()
		return usageError{"a subcommand is required: list, remove or transfer"}
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
			return usageError{"a subcommand is required: list, remove or transfer"}
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
	case "list":
		if len(rest) != 0 {
			return usageError{"list takes no arguments"}
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
		return usageError{fmt.Sprintf("unknown subcommand %q: use list, remove or transfer", sub)}
	}
	c, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	switch sub {
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
