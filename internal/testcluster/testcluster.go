// Package testcluster starts clusters of embedded Tandem nodes on loopback for tests and
// benchmarks.
package testcluster

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandemdb/tandem"
)

// Start starts n embedded nodes listening on 127.0.0.1: the first bootstraps a cluster and
// the others join it. It returns once all n are voters; tb.Cleanup closes them. opts are
// added to every node's options (e.g. tandem.WithTickInterval for faster elections).
func Start(tb testing.TB, n int, opts ...tandem.Option) []*tandem.Node {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := tb.TempDir()
	var nodes []*tandem.Node
	for i := range n {
		o := append([]tandem.Option{tandem.WithID(uint64(i + 1)), tandem.WithAddress("127.0.0.1:0")}, opts...)
		if i > 0 {
			o = append(o, tandem.WithCluster(nodes[0].Addr()))
		}
		node, err := tandem.New(filepath.Join(base, fmt.Sprintf("n%d", i+1)), o...)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { node.Close() })
		if err := node.Ready(ctx); err != nil {
			tb.Fatalf("node %d not ready: %v", i+1, err)
		}
		nodes = append(nodes, node)
	}
	for {
		ms, err := nodes[0].Cluster(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		voters := 0
		for _, m := range ms {
			if m.Role == "voter" {
				voters++
			}
		}
		if voters == n {
			return nodes
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("only %d of %d voters: %+v", voters, n, ms)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
