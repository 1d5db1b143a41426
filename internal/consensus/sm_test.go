package consensus

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// listSM is the test state machine: every committed entry appended to a file-backed list.
// It checks that it is fed the log without gaps and skips entries it already has.
type listSM struct {
	mu       sync.Mutex
	path     string
	ents     []Entry
	applied  uint64
	gaps     []string
	restores int
	failOn   []byte // Apply fails on an entry with this data
	blob     int    // SaveSnapshot adds a file of this many bytes (exercises streaming)
}

func openListSM(dir string) (*listSM, error) {
	sm := &listSM{path: filepath.Join(dir, "list")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return sm, sm.load(sm.path)
}

func (sm *listSM) load(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		sm.ents, sm.applied = nil, 0
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sm.ents, sm.applied = nil, 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e Entry
		var data string
		if _, err := fmt.Sscanf(sc.Text(), "%d %d %s", &e.Index, &e.Term, &data); err != nil {
			return err
		}
		if data != "-" {
			if e.Data, err = hex.DecodeString(data); err != nil {
				return err
			}
		}
		sm.ents = append(sm.ents, e)
		sm.applied = e.Index
	}
	return sc.Err()
}

func encodeEntry(e Entry) string {
	data := "-"
	if e.Data != nil {
		data = hex.EncodeToString(e.Data)
	}
	return fmt.Sprintf("%d %d %s\n", e.Index, e.Term, data)
}

func (sm *listSM) Apply(ents []Entry) error {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	f, err := os.OpenFile(sm.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	var buf bytes.Buffer
	for _, e := range ents {
		if e.Index <= sm.applied {
			continue // already have it (re-fed after restart)
		}
		if e.Index != sm.applied+1 {
			sm.gaps = append(sm.gaps, fmt.Sprintf("applied %d, got %d", sm.applied, e.Index))
		}
		if sm.failOn != nil && bytes.Equal(e.Data, sm.failOn) {
			f.Write(buf.Bytes())
			return fmt.Errorf("test state machine refuses %q at %d", e.Data, e.Index)
		}
		e.Data = bytes.Clone(e.Data)
		sm.ents = append(sm.ents, e)
		sm.applied = e.Index
		buf.WriteString(encodeEntry(e))
	}
	_, err = f.Write(buf.Bytes())
	return err
}

func (sm *listSM) SaveSnapshot(dir string) error {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	var buf bytes.Buffer
	for _, e := range sm.ents {
		buf.WriteString(encodeEntry(e))
	}
	if err := os.WriteFile(filepath.Join(dir, "list"), buf.Bytes(), 0o644); err != nil {
		return err
	}
	if sm.blob > 0 {
		b := make([]byte, sm.blob)
		for i := range b {
			b[i] = byte(i * 7)
		}
		if err := os.WriteFile(filepath.Join(dir, "blob"), b, 0o644); err != nil {
			return err
		}
	}
	// A second file, so that streaming more than one file is exercised.
	return os.WriteFile(filepath.Join(dir, "meta"), fmt.Appendf(nil, "%d\n", sm.applied), 0o644)
}

func (sm *listSM) RestoreSnapshot(dir string, index uint64) error {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if err := os.Rename(filepath.Join(dir, "list"), sm.path); err != nil {
		return err
	}
	if err := sm.load(sm.path); err != nil {
		return err
	}
	if sm.applied != index {
		return fmt.Errorf("restored list ends at %d, snapshot index %d", sm.applied, index)
	}
	sm.restores++
	return nil
}

func (sm *listSM) AppliedIndex() uint64 {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return sm.applied
}

// data returns the non-empty entries' data, in order.
func (sm *listSM) data() []string {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	var out []string
	for _, e := range sm.ents {
		if e.Data != nil {
			out = append(out, string(e.Data))
		}
	}
	return out
}

func (sm *listSM) entries() []Entry {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return append([]Entry(nil), sm.ents...)
}

func (sm *listSM) problems() []string {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return append([]string(nil), sm.gaps...)
}

func (sm *listSM) restoreCount() int {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return sm.restores
}

func (sm *listSM) setFailOn(b []byte) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	sm.failOn = b
}
