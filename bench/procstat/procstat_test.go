package procstat

import (
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

func busy(d time.Duration) int {
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		for i := range 10000 {
			n += i * i
		}
	}
	return n
}

func TestSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	pid := os.Getpid()
	a, err := Read(pid)
	if err != nil {
		t.Fatal(err)
	}
	if a.RSS <= 0 || a.Threads <= 0 || a.FDs <= 0 {
		t.Fatalf("sample %+v", a)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_ = busy(300 * time.Millisecond)
	b, err := Read(pid)
	if err != nil {
		t.Fatal(err)
	}
	if b.CPU <= a.CPU {
		t.Fatalf("CPU did not rise: %v then %v", a.CPU, b.CPU)
	}
	if b.Sockets < 1 || b.Sockets < a.Sockets {
		t.Fatalf("sockets %d then %d", a.Sockets, b.Sockets)
	}
	u := Between(a, b)
	// One goroutine spun for ~300 ms: around 100% of a core (ticks are 10 ms; the machine is shared).
	if u.CPUPercent < 30 || u.CPUPercent > 400 {
		t.Fatalf("cpu %.1f%% over %.2fs", u.CPUPercent, u.Seconds)
	}
	if u.RSSBytes <= 0 || u.VolCtxPerSec < 0 {
		t.Fatalf("usage %+v", u)
	}
}

func TestWatch(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	stop := make(chan struct{})
	done := make(chan map[int]Usage)
	pid := os.Getpid()
	go func() { done <- Watch([]int{pid, -1}, 50*time.Millisecond, stop) }()
	_ = busy(200 * time.Millisecond)
	close(stop)
	m := <-done
	if len(m) != 1 || m[pid].CPUPercent <= 0 || m[pid].Seconds <= 0 {
		t.Fatalf("%+v", m)
	}
}

func TestParse(t *testing.T) {
	stat := []byte("42 (a b) c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000 200 0\n")
	d, err := parseStatCPU(stat)
	if err != nil || d != 3*time.Second {
		t.Fatalf("%v %v", d, err)
	}
	if _, err := parseStatCPU([]byte("42 (x) S 1")); err == nil {
		t.Fatal("short stat accepted")
	}
	f := parseStatus([]byte("Name:\tx\nVmRSS:\t  1234 kB\nvoluntary_ctxt_switches:\t7\n"))
	if f["VmRSS"] != 1234 || f["voluntary_ctxt_switches"] != 7 {
		t.Fatalf("%v", f)
	}
	a := Sample{At: time.Unix(0, 0), CPU: 0, VolCtx: 10}
	b := Sample{At: time.Unix(2, 0), CPU: time.Second, VolCtx: 30, RSS: 5}
	if u := Between(a, b); u.CPUPercent != 50 || u.VolCtxPerSec != 10 || u.RSSBytes != 5 {
		t.Fatalf("%+v", u)
	}
}
