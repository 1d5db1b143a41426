// Package procstat reads a process's resource use from Linux's /proc: CPU time (utime+stime),
// resident memory, voluntary and involuntary context switches summed over its threads, and its
// open file descriptors and sockets. Two samples give CPU as a percentage of one core and
// context switches per second over the interval between them.
package procstat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime and stime in /proc/PID/stat. Linux fixes it at 100 for user
// space on every architecture (USER_HZ), whatever the kernel's internal HZ.
const userHZ = 100

// Sample is one reading of a process.
type Sample struct {
	PID        int
	At         time.Time     // when it was read
	CPU        time.Duration // user + system CPU time consumed so far
	RSS        int64         // resident set size, bytes
	Threads    int           // threads (tasks)
	VolCtx     int64         // voluntary context switches, summed over all threads
	NonVolCtx  int64         // involuntary context switches, summed over all threads
	FDs        int           // open file descriptors
	Sockets    int           // of which sockets
	ReadErrors int           // threads or fds that vanished while being read (harmless)
}

// root is /proc; tests may point it elsewhere.
var root = "/proc"

// Read samples process pid. Unreadable per-thread or per-fd entries (a thread that exits
// while it is read) are skipped; an unreadable process is an error.
func Read(pid int) (Sample, error) {
	s := Sample{PID: pid, At: time.Now()}
	dir := filepath.Join(root, strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return s, err
	}
	if s.CPU, err = parseStatCPU(stat); err != nil {
		return s, fmt.Errorf("procstat: %s/stat: %w", dir, err)
	}
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return s, err
	}
	f := parseStatus(status)
	s.RSS = f["VmRSS"] * 1024 // in kB
	s.Threads = int(f["Threads"])

	tasks, err := os.ReadDir(filepath.Join(dir, "task"))
	if err != nil {
		return s, err
	}
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, "task", t.Name(), "status"))
		if err != nil {
			s.ReadErrors++
			continue
		}
		tf := parseStatus(b)
		s.VolCtx += tf["voluntary_ctxt_switches"]
		s.NonVolCtx += tf["nonvoluntary_ctxt_switches"]
	}

	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return s, err
	}
	for _, fd := range fds {
		s.FDs++
		target, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
		if err != nil {
			s.ReadErrors++
			continue
		}
		if strings.HasPrefix(target, "socket:") {
			s.Sockets++
		}
	}
	return s, nil
}

// parseStatCPU returns utime+stime from the contents of /proc/PID/stat. The command name
// (field 2) is in parentheses and may hold spaces or parentheses, so fields are counted
// after the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, errors.New("too few fields")
	}
	ut, err1 := strconv.ParseInt(fields[11], 10, 64)
	st, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// parseStatus returns the numeric fields of a /proc status file ("Name:\t123 kB").
func parseStatus(b []byte) map[string]int64 {
	out := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// Usage is the resource use of a process between two samples.
type Usage struct {
	PID          int     `json:"pid"`
	Seconds      float64 `json:"seconds"`                 // length of the interval
	CPUPercent   float64 `json:"cpu_percent"`             // of one core (200 = two cores busy)
	RSSBytes     int64   `json:"rss_bytes"`               // at the end
	VolCtxPerSec float64 `json:"voluntary_ctx_per_sec"`   // voluntary context switches per second
	NonVolPerSec float64 `json:"involuntary_ctx_per_sec"` // involuntary context switches per second
	Threads      int     `json:"threads"`                 // at the end
	FDs          int     `json:"fds"`                     // at the end
	Sockets      int     `json:"sockets"`                 // at the end
}

// Between returns the use from a to b (b taken after a, same process).
func Between(a, b Sample) Usage {
	u := Usage{PID: b.PID, RSSBytes: b.RSS, Threads: b.Threads, FDs: b.FDs, Sockets: b.Sockets}
	d := b.At.Sub(a.At)
	if d <= 0 {
		return u
	}
	u.Seconds = d.Seconds()
	u.CPUPercent = 100 * float64(b.CPU-a.CPU) / float64(d)
	// Threads that exited between the samples take their switches with them: never negative.
	u.VolCtxPerSec = max(0, float64(b.VolCtx-a.VolCtx)/u.Seconds)
	u.NonVolPerSec = max(0, float64(b.NonVolCtx-a.NonVolCtx)/u.Seconds)
	return u
}

// Watch samples pids every interval until stop is closed, then returns each process's use
// over the whole period (first to last good sample). A process that cannot be read at all is
// left out of the result.
func Watch(pids []int, interval time.Duration, stop <-chan struct{}) map[int]Usage {
	first := map[int]Sample{}
	last := map[int]Sample{}
	sample := func() {
		for _, pid := range pids {
			s, err := Read(pid)
			if err != nil {
				continue
			}
			if _, ok := first[pid]; !ok {
				first[pid] = s
			}
			last[pid] = s
		}
	}
	sample()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			sample()
			out := map[int]Usage{}
			for pid, a := range first {
				out[pid] = Between(a, last[pid])
			}
			return out
		case <-t.C:
			sample()
		}
	}
}
