// Command tandem runs and operates Tandem nodes: the node daemon, an SQL shell, cluster
// management, a local demo and TLS certificates. Each subcommand lives in its own file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"node", "run a cluster node (bootstrap, join or restart)", runNode},
		{"sql", "run SQL against a cluster (arguments or standard input)", runSQL},
		{"cluster", "list the members, remove a node, transfer leadership", runCluster},
		{"demo", "start a 3-node cluster on loopback and run a short workload", runDemo},
		{"cert", "make a CA and node certificates for mutual TLS", runCert},
		{"bench", "benchmarks: SQL workloads with plotted reports", runBench},
	}
}

// exitRefused is the exit status of a node the cluster refused to add (its ID or address is
// taken, or its ID was removed): starting it again unchanged is refused again, so a
// supervisor should not restart it (systemd: RestartPreventExitStatus=3).
const exitRefused = 3

// exitError makes the command exit with code instead of 1.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// usageError marks a bad command line: it exits with status 2, like flag's own errors.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdin, stdout, stderr)
		var ue usageError
		var ee exitError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "tandem %s: %v\n(see tandem %s --help)\n", c.name, err, c.name)
			return 2
		case errors.As(err, &ee):
			fmt.Fprintf(stderr, "tandem %s: %v\n", c.name, err)
			return ee.code
		default:
			fmt.Fprintf(stderr, "tandem %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "tandem: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Tandem: a Raft-replicated SQLite database for Go.")
	fmt.Fprintln(w, "\nUsage: tandem COMMAND [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'tandem COMMAND --help' for a command's flags.")
}

// newFlags makes a flag set that reports errors instead of exiting and prints a usage header.
func newFlags(name, synopsis, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tandem %s %s\n\n%s\n\nFlags:\n", name, synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, flags and other arguments in any order (`tandem sql "SELECT 1"
// --cluster ...` must not take --cluster for SQL), and turns flag errors into usage errors
// (exit status 2). The arguments that are not flags are fs.Args() afterwards; "--" ends the
// flags. An argument that cannot be a flag is never read as one: one with a blank in it
// (SQL text such as "-- a comment" or "-1 + x"), "-", negative numbers, and after the first
// argument that is not a flag, any word with a single dash.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var flags, positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			positional = append(positional, args[i+1:]...)
			i = len(args)
		case !strings.HasPrefix(a, "-") || notAFlag(a):
			positional = append(positional, a)
		case len(positional) > 0 && !strings.HasPrefix(a, "--") && a != "-h" && a != "-help":
			// After an argument only --name is a flag: unquoted SQL such as
			// `SELECT -db FROM t` must not lose "-db FROM" to the --db flag.
			positional = append(positional, a)
		case strings.Contains(a, "=") || i+1 == len(args) || takesNoValue(fs, a):
			flags = append(flags, a) // unknown flags too: Parse reports them
		default:
			flags = append(flags, a, args[i+1])
			i++
		}
	}
	if err := fs.Parse(flags); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	// Parsing "--" alone sets fs.Args() and leaves the flags as they are.
	return fs.Parse(append([]string{"--"}, positional...))
}

// takesNoValue reports whether the flag argument a (-name or --name) is a boolean flag or
// not a flag of fs at all: either way the next argument is not its value.
func takesNoValue(fs *flag.FlagSet, a string) bool {
	f := fs.Lookup(strings.TrimLeft(a, "-"))
	if f == nil {
		return true
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// noArgs refuses arguments that are not flags, for the commands that take none.
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() != 0 {
		return usageError{fmt.Sprintf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	return nil
}

// notAFlag reports whether a command-line argument cannot be a flag even though it may start
// with '-'.
func notAFlag(arg string) bool {
	if arg == "-" || strings.ContainsAny(arg, " \t\n") {
		return true
	}
	_, err := strconv.ParseFloat(arg, 64)
	return strings.HasPrefix(arg, "-") && err == nil
}
