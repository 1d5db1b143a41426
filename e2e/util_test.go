package e2e

import (
	"errors"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// exitCode is the exit status of a finished CLI run: 0 for a nil error, -1 when the process
// did not exit normally (could not start, killed by a signal).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// logText returns what a node process has printed so far.
func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// logLen is the length of the node's output so far: pass it to logSince to look only at what
// the node prints afterwards.
func (p *proc) logLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.Len()
}

func (p *proc) logSince(off int) string {
	s := p.logText()
	if off > len(s) {
		return ""
	}
	return s[off:]
}

// logLines returns the lines of s holding msg="<msg>" (slog's text format).
func logLines(s, msg string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, `msg="`+msg+`"`) || strings.Contains(l, "msg="+msg+" ") {
			out = append(out, l)
		}
	}
	return out
}

var indexAttr = regexp.MustCompile(`\bindex=(\d+)`)

// logIndex returns the index= attribute of a log line, 0 when it has none.
func logIndex(line string) uint64 {
	m := indexAttr.FindStringSubmatch(line)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseUint(m[1], 10, 64)
	return v
}

// memberByID returns the member of ms with that id.
func memberByID(ms []member, id int) (member, bool) {
	for _, m := range ms {
		if m.ID == uint64(id) {
			return m, true
		}
	}
	return member{}, false
}

// waitFor polls cond every 100 ms until it holds or the timeout passes; it returns the
// last description cond gave.
func waitFor(timeout time.Duration, cond func() (bool, string)) (bool, string) {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, desc := cond()
		if ok {
			return true, desc
		}
		last = desc
		if time.Now().After(deadline) {
			return false, last
		}
		time.Sleep(100 * time.Millisecond)
	}
}
