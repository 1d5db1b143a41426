// Package failover keeps the books of the failover benchmark: which writes were acknowledged
// and which ended with an unknown outcome (the Ledger), when writes resumed after each kill
// (the Tracker), and the final audit of every node's rows against the ledger.
package failover

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// Key identifies one written row: the worker that wrote it and the worker's sequence number.
type Key struct {
	Worker int64
	Seq    int64
}

// Ledger records the outcome of every write. It is safe for concurrent use.
type Ledger struct {
	mu      sync.Mutex
	acked   map[Key]bool
	unknown map[Key]bool
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{acked: map[Key]bool{}, unknown: map[Key]bool{}}
}

// Acked records a write the cluster acknowledged: it must be present exactly once.
func (l *Ledger) Acked(k Key) {
	l.mu.Lock()
	l.acked[k] = true
	l.mu.Unlock()
}

// Unknown records a write whose outcome is unknown: it may be present at most once.
func (l *Ledger) Unknown(k Key) {
	l.mu.Lock()
	l.unknown[k] = true
	l.mu.Unlock()
}

// Counts returns how many writes were acknowledged and how many have an unknown outcome.
func (l *Ledger) Counts() (acked, unknown int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked), len(l.unknown)
}

// Audit is the comparison of the nodes' rows with the ledger.
type Audit struct {
	Nodes          int      `json:"nodes"`           // nodes whose rows were read
	Acked          int      `json:"acked"`           // acknowledged writes
	Unknown        int      `json:"unknown"`         // writes with an unknown outcome
	UnknownPresent int      `json:"unknown_present"` // of those, how many were applied (on the first node)
	Lost           int      `json:"lost"`            // acknowledged writes missing on some node
	Duplicated     int      `json:"duplicated"`      // rows present more than once on some node
	Unexpected     int      `json:"unexpected"`      // rows no write asked for (on some node)
	Differ         int      `json:"differ"`          // nodes whose rows differ from the first node's
	Problems       []string `json:"problems,omitempty"`
}

// OK reports whether the audit found nothing wrong.
func (a Audit) OK() bool {
	return a.Nodes > 0 && a.Lost == 0 && a.Duplicated == 0 && a.Unexpected == 0 && a.Differ == 0
}

// maxProblems bounds the examples an audit lists.
const maxProblems = 10

// Check audits the rows of each node (row key -> number of copies) against the ledger.
func (l *Ledger) Check(nodes map[string]map[Key]int) Audit {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := Audit{Nodes: len(nodes), Acked: len(l.acked), Unknown: len(l.unknown)}
	note := func(format string, args ...any) {
		if len(a.Problems) < maxProblems {
			a.Problems = append(a.Problems, fmt.Sprintf(format, args...))
		}
	}
	names := make([]string, 0, len(nodes))
	for n := range nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	lost, dup, unexpected := map[Key]bool{}, map[Key]bool{}, map[Key]bool{}
	for _, name := range names {
		rows := nodes[name]
		for k := range l.acked {
			if rows[k] == 0 {
				if !lost[k] {
					note("%s: acknowledged write %d/%d is missing", name, k.Worker, k.Seq)
				}
				lost[k] = true
			}
		}
		for k, n := range rows {
			if n > 1 {
				if !dup[k] {
					note("%s: write %d/%d is present %d times", name, k.Worker, k.Seq, n)
				}
				dup[k] = true
			}
			if !l.acked[k] && !l.unknown[k] {
				if !unexpected[k] {
					note("%s: row %d/%d was never written", name, k.Worker, k.Seq)
				}
				unexpected[k] = true
			}
		}
	}
	a.Lost, a.Duplicated, a.Unexpected = len(lost), len(dup), len(unexpected)
	if len(names) > 0 {
		first := nodes[names[0]]
		for k := range l.unknown {
			if first[k] > 0 {
				a.UnknownPresent++
			}
		}
		for _, name := range names[1:] {
			if !sameRows(first, nodes[name]) {
				a.Differ++
				note("%s holds other rows than %s", name, names[0])
			}
		}
	}
	return a
}

func sameRows(a, b map[Key]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, n := range a {
		if b[k] != n {
			return false
		}
	}
	return true
}

// Tracker finds when writes resume after a kill: the earliest end of a successful write that
// started after the kill. A write started before the kill does not count, even if it ends
// after it: the killed node may have answered it just before it died. It is safe for
// concurrent use.
type Tracker struct {
	mu      sync.Mutex
	killed  time.Time // zero when no kill is pending
	resumed time.Time
}

// Killed marks a kill at t and forgets the previous one.
func (t *Tracker) Killed(at time.Time) {
	t.mu.Lock()
	t.killed, t.resumed = at, time.Time{}
	t.mu.Unlock()
}

// Success records a successful write that started at start and ended at end.
func (t *Tracker) Success(start, end time.Time) {
	t.mu.Lock()
	if !t.killed.IsZero() && !start.Before(t.killed) && (t.resumed.IsZero() || end.Before(t.resumed)) {
		t.resumed = end
	}
	t.mu.Unlock()
}

// Resumed returns how long after the kill writes resumed, and false while they have not.
func (t *Tracker) Resumed() (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.killed.IsZero() || t.resumed.IsZero() {
		return 0, false
	}
	return t.resumed.Sub(t.killed), true
}
