package failover

import (
	"testing"
	"time"
)

func TestCheckFindsLostDuplicatedAndUnexpected(t *testing.T) {
	l := NewLedger()
	for s := range int64(5) {
		l.Acked(Key{1, s})
	}
	l.Unknown(Key{2, 0})
	l.Unknown(Key{2, 1})
	good := map[Key]int{{1, 0}: 1, {1, 1}: 1, {1, 2}: 1, {1, 3}: 1, {1, 4}: 1, {2, 0}: 1}
	copyOf := func(m map[Key]int) map[Key]int {
		out := map[Key]int{}
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	a := l.Check(map[string]map[Key]int{"n1": good, "n2": copyOf(good), "n3": copyOf(good)})
	if !a.OK() || a.Acked != 5 || a.Unknown != 2 || a.UnknownPresent != 1 || a.Nodes != 3 {
		t.Fatalf("clean audit: %+v", a)
	}

	lost := copyOf(good)
	delete(lost, Key{1, 3})
	dup := copyOf(good)
	dup[Key{1, 1}] = 2
	extra := copyOf(good)
	extra[Key{9, 9}] = 1
	a = l.Check(map[string]map[Key]int{"n1": good, "n2": lost, "n3": dup, "n4": extra})
	if a.OK() || a.Lost != 1 || a.Duplicated != 1 || a.Unexpected != 1 || a.Differ != 3 {
		t.Fatalf("bad audit: %+v", a)
	}
	if len(a.Problems) == 0 {
		t.Fatal("no problem described")
	}
	if a := l.Check(nil); a.OK() {
		t.Fatalf("an audit of no node passed: %+v", a)
	}
}

func TestTrackerCountsOnlyWritesStartedAfterTheKill(t *testing.T) {
	var tr Tracker
	t0 := time.Unix(1000, 0)
	tr.Success(t0, t0.Add(time.Millisecond)) // before any kill: ignored
	if _, ok := tr.Resumed(); ok {
		t.Fatal("resumed without a kill")
	}
	kill := t0.Add(time.Second)
	tr.Killed(kill)
	tr.Success(kill.Add(-time.Millisecond), kill.Add(5*time.Millisecond)) // started before the kill
	if _, ok := tr.Resumed(); ok {
		t.Fatal("a write started before the kill counted")
	}
	tr.Success(kill.Add(10*time.Millisecond), kill.Add(1200*time.Millisecond))
	tr.Success(kill.Add(20*time.Millisecond), kill.Add(900*time.Millisecond)) // recorded later, ended earlier
	if d, ok := tr.Resumed(); !ok || d != 900*time.Millisecond {
		t.Fatalf("resumed %v %v, want 0.9s", d, ok)
	}
	tr.Killed(kill.Add(time.Minute))
	if _, ok := tr.Resumed(); ok {
		t.Fatal("a new kill kept the old resumption")
	}
}
