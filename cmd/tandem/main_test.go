package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsInAnyOrder(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		cluster string
		keep    bool
		rest    []string
	}{
		{args: []string{"SELECT 1", "--cluster", "h:1"}, cluster: "h:1", rest: []string{"SELECT 1"}},
		{args: []string{"--cluster=h:1", "SELECT", "1"}, cluster: "h:1", rest: []string{"SELECT", "1"}},
		{args: []string{"SELECT", "--keep", "x", "--cluster", "h:2"}, cluster: "h:2", keep: true, rest: []string{"SELECT", "x"}},
		{args: []string{"-keep", "-cluster", "h:2", "SELECT"}, cluster: "h:2", keep: true, rest: []string{"SELECT"}},
		{args: []string{"--cluster", "h:1", "--", "--keep", "-x"}, cluster: "h:1", rest: []string{"--keep", "-x"}},
		{args: []string{"-- a comment", "SELECT -1", "-1", "-", "-2.5"}, cluster: "def", rest: []string{"-- a comment", "SELECT -1", "-1", "-", "-2.5"}},
		{args: []string{"SELECT", "-cluster", "FROM", "t", "--cluster", "h:3"}, cluster: "h:3", rest: []string{"SELECT", "-cluster", "FROM", "t"}},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cluster := fs.String("cluster", "def", "")
		keep := fs.Bool("keep", false, "")
		if err := parseFlags(fs, tc.args); err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if *cluster != tc.cluster || *keep != tc.keep || !slices.Equal(fs.Args(), tc.rest) {
			t.Errorf("%q: cluster %q keep %v args %q; want %q %v %q", tc.args, *cluster, *keep, fs.Args(), tc.cluster, tc.keep, tc.rest)
		}
	}
	for _, args := range [][]string{{"SELECT 1", "--nosuch"}, {"-x"}, {"--cluster"}} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.String("cluster", "", "")
		var ue usageError
		if err := parseFlags(fs, args); !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := parseFlags(fs, []string{"SELECT 1", "-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h after an argument: %v, want ErrHelp", err)
	}
}

// Bad command lines exit with status 2 and a message, never a panic, and do nothing.
func TestBadCommandLines(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"demo", "--writers", "-3"}, "--writers must be between 1 and 1000"},
		{[]string{"demo", "--rows", "0"}, "--rows must be at least 1"},
		{[]string{"node", "oops", "--id", "1", "--data", "x"}, "unexpected arguments: oops"},
		{[]string{"node", "--id", "1", "--data", "x", "extra"}, "unexpected arguments: extra"},
		{[]string{"node", "--id", "1", "--data", "x", "--tx-idle-timeout", "0s"}, "--tx-idle-timeout must be positive"},
		{[]string{"node", "--id", "1", "--data", "x", "--max-entry-mib", "0"}, "--max-entry-mib must be between 1 and 1024"},
		{[]string{"cert", "--out", "x", "--valid", "-1h"}, "--valid must be positive"},
		{[]string{"sql", "--timeout", "0s", "SELECT 1"}, "--timeout must be positive"},
		{[]string{"sql", "--db", "bad name", "SELECT 1"}, "invalid database name"},
		{[]string{"cluster", "list", "--timeout", "-5s"}, "--timeout must be positive"},
		{[]string{"cluster", "list", "--cluster", ""}, "--cluster names no node"},
		{[]string{"cluster", "--cluster", "", "list"}, "--cluster names no node"},
		{[]string{"cluster", "--format", "json"}, "a subcommand is required"},
		{[]string{"cluster", "--format", "json", "remove", "x"}, `"x" is not a node ID`},
		{[]string{"sql", "--cluster", "127.0.0.1", "SELECT 1"}, `"127.0.0.1" is not HOST:PORT`},
	} {
		var stderr bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		code := run(ctx, tc.args, strings.NewReader(""), io.Discard, &stderr)
		cancel()
		if code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: exit %d, %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

// An unreachable cluster is a failure (status 1), not a bad command line.
func TestUnreachableClusterIsNotAUsageError(t *testing.T) {
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"sql", "SELECT 1", "--cluster", "127.0.0.1:1", "--timeout", "2s"},
		strings.NewReader(""), io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "cannot reach the cluster at 127.0.0.1:1") || strings.Contains(stderr.String(), "--help") {
		t.Fatalf("exit %d, %q; want 1 and the address that could not be reached, without a usage hint", code, stderr.String())
	}
}

func TestQuorumWarning(t *testing.T) {
	row := func(role string, leader, healthy bool) memberRow {
		return memberRow{Role: role, Leader: leader, Healthy: healthy}
	}
	for _, tc := range []struct {
		rows []memberRow
		want string // in the warning; "" = none
	}{
		{[]memberRow{row("voter", true, true), row("voter", false, true), row("voter", false, false)}, ""},
		{[]memberRow{row("voter", false, true), row("voter", false, true), row("voter", false, true)}, "no leader"},
		{[]memberRow{row("voter", false, true), row("voter", false, false), row("voter", false, false)}, "only 1 of 3 voters"},
		{[]memberRow{row("voter", true, true), row("voter", false, false), row("learner", false, true)}, "only 1 of 2 voters"},
	} {
		got := quorumWarning(tc.rows)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%+v: warning %q, want %q", tc.rows, got, tc.want)
		}
	}
}

// A REAL that JSON has no number for is written as {"real": "+Inf"} (encoding/json refused
// it and the output stopped; found by a QA pass), a blob as {"blob": hex}.
func TestJSONValue(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want string
	}{
		{math.Inf(1), `{"real":"+Inf"}`},
		{math.Inf(-1), `{"real":"-Inf"}`},
		{math.NaN(), `{"real":"NaN"}`},
		{1.5, `1.5`},
		{[]byte{0, 0xff}, `{"blob":"00ff"}`},
		{"x", `"x"`},
		{nil, `null`},
	} {
		b, err := json.Marshal(jsonValue(tc.in))
		if err != nil || string(b) != tc.want {
			t.Errorf("jsonValue(%v) = %s, %v; want %s", tc.in, b, err, tc.want)
		}
	}
}

// A script of comments only runs nothing and succeeds (a QA pass got exit 2, "no SQL
// given"); no script at all is a usage error.
func TestCommentOnlyScript(t *testing.T) {
	for _, tc := range []struct {
		stdin string
		code  int
	}{
		{"-- a migration with nothing left\n/* x */ ;\n", 0},
		{"", 2},
		{"  \n", 2},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), []string{"sql", "--cluster", "127.0.0.1:1", "--timeout", "1s"},
			strings.NewReader(tc.stdin), io.Discard, &stderr)
		if code != tc.code {
			t.Errorf("script %q: exit %d (%s), want %d", tc.stdin, code, stderr.String(), tc.code)
		}
	}
}

// CSV tells NULL (empty) from ” (a quoted empty field), and quotes what RFC 4180 requires.
func TestCSVField(t *testing.T) {
	for _, tc := range []struct {
		in   string
		null bool
		want string
	}{
		{"", true, ``},
		{"", false, `""`},
		{"plain", false, `plain`},
		{`a,b`, false, `"a,b"`},
		{`say "hi"`, false, `"say ""hi"""`},
		{"two\nlines", false, "\"two\nlines\""},
		{" padded", false, `" padded"`},
	} {
		if got := csvField(tc.in, tc.null); got != tc.want {
			t.Errorf("csvField(%q, %v) = %s, want %s", tc.in, tc.null, got, tc.want)
		}
	}
}
