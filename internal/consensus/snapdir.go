package consensus

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/raft/v3"
)

// Layout of Dir/snap:
//
//	<term>-<index>.snap  raft snapshot metadata (etcd snap package); Data = snapshotDesc JSON
//	db-<index>/          the state machine's files for that snapshot (SaveSnapshot output)
//	recv-<index>/        files of a snapshot being received from the leader
//	*.tmp                work in progress, removed on the next clean-up

// snapshotDesc is the Data of every raft snapshot: small, the files travel separately.
type snapshotDesc struct {
	Index   uint64     `json:"index"`
	Term    uint64     `json:"term"`
	Members []Member   `json:"members"`
	Files   []fileDesc `json:"files"`
	// Formers are the members removed before Index that this node knew of, so that a node
	// restarting from the snapshot, or one that receives it, can still tell them (see
	// noticeFormer): the removals themselves are compacted away. Absent in older snapshots.
	Formers []formerDesc `json:"formers,omitempty"`
}

// formerDesc is a former member in a snapshot description.
type formerDesc struct {
	ID        uint64 `json:"id"`
	RemovedAt uint64 `json:"removed_at"`
	Addr      string `json:"addr"`
}

type fileDesc struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

func parseSnapshotDesc(data []byte) (*snapshotDesc, error) {
	var d snapshotDesc
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("consensus: bad snapshot description: %w", err)
	}
	return &d, nil
}

func (n *Node) dbDir(index uint64) string {
	return filepath.Join(n.snapDir, "db-"+strconv.FormatUint(index, 10))
}
func (n *Node) recvDir(index uint64) string {
	return filepath.Join(n.snapDir, "recv-"+strconv.FormatUint(index, 10))
}

// writeLocalSnapshot fills dir through fill (into dir.tmp, then renamed) and fsyncs it all.
func (n *Node) writeLocalSnapshot(dir string, fill func(string) error) ([]fileDesc, error) {
	tmp := dir + ".tmp"
	if err := removeAll(tmp); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	if err := fill(tmp); err != nil {
		_ = removeAll(tmp)
		return nil, err
	}
	files, err := listFiles(tmp, true)
	if err != nil {
		_ = removeAll(tmp)
		return nil, err
	}
	if err := syncDir(tmp); err != nil {
		return nil, err
	}
	if err := removeAll(dir); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	return files, syncDir(n.snapDir)
}

// listFiles lists a flat snapshot directory, optionally fsyncing every file.
func listFiles(dir string, sync bool) ([]fileDesc, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []fileDesc
	for _, e := range ents {
		if !e.Type().IsRegular() {
			return nil, fmt.Errorf("consensus: snapshot dir %s holds %s, which is not a regular file", dir, e.Name())
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		if sync {
			f, err := os.Open(filepath.Join(dir, e.Name()))
			if err != nil {
				return nil, err
			}
			err = f.Sync()
			f.Close()
			if err != nil {
				return nil, err
			}
		}
		files = append(files, fileDesc{Name: e.Name(), Size: info.Size()})
	}
	return files, nil
}

// checkSnapshotFiles verifies that dir holds exactly the described files.
func checkSnapshotFiles(dir string, want []fileDesc) error {
	got, err := listFiles(dir, false)
	if err != nil {
		return err
	}
	if len(got) != len(want) {
		return fmt.Errorf("consensus: %s holds %d files, snapshot describes %d", dir, len(got), len(want))
	}
	sizes := map[string]int64{}
	for _, f := range got {
		sizes[f.Name] = f.Size
	}
	for _, f := range want {
		if s, ok := sizes[f.Name]; !ok || s != f.Size {
			return fmt.Errorf("consensus: snapshot file %s missing or of wrong size in %s", f.Name, dir)
		}
	}
	return nil
}

// copyFiles copies the flat directory src into dst, file by file, streaming.
func copyFiles(src, dst string) error {
	files, err := listFiles(src, false)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := copyFile(filepath.Join(src, f.Name), filepath.Join(dst, f.Name)); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func removeAll(path string) error {
	if err := os.RemoveAll(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// restoreOnRestart decides whether the state machine needs the local snapshot at index.
//
// The state machine's files are durable on their own, so normally nothing is restored: the
// node re-feeds the log after the snapshot index and the state machine skips what it
// already has. It is behind only after a crash between SaveSnapshot and its own state
// reaching disk; a state machine that implements AppliedIndexer tells us so, and then a
// copy of Dir/snap/db-<index> is restored (a copy because RestoreSnapshot may move the files,
// and db-<index> must stay servable to followers). A received snapshot never needs this:
// it is installed before it is recorded in the WAL.
func (n *Node) restoreOnRestart(index uint64) error {
	ai, ok := n.cfg.StateMachine.(AppliedIndexer)
	if !ok {
		return nil
	}
	applied := ai.AppliedIndex()
	if applied >= index {
		return nil
	}
	src := n.dbDir(index)
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("consensus: state machine at %d is behind snapshot %d and %s is gone: %w", applied, index, src, err)
	}
	tmp := filepath.Join(n.snapDir, "restore-"+strconv.FormatUint(index, 10)+".tmp")
	if err := removeAll(tmp); err != nil {
		return err
	}
	defer removeAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if err := copyFiles(src, tmp); err != nil {
		return err
	}
	n.log.Warn("state machine behind the newest snapshot; restoring the local copy", "applied", applied, "snapshot", index)
	return n.cfg.StateMachine.RestoreSnapshot(tmp, index)
}

// removeStaleReceives deletes recv-<index> directories at or below the newest snapshot:
// installed ones, and ones raft ignored (stale, or sent before this node was a member).
func (n *Node) removeStaleReceives() {
	ents, err := os.ReadDir(n.snapDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		name, ok := strings.CutPrefix(e.Name(), "recv-")
		if !ok {
			continue
		}
		if i, err := strconv.ParseUint(name, 10, 64); err == nil && i <= n.ap.lastSnap {
			_ = removeAll(filepath.Join(n.snapDir, e.Name()))
		}
	}
}

const keepSnapshots = 2

// gcSnapshots keeps the newest two snapshots (snap files, db dirs, and the WAL from the older
// of them on) and deletes the rest, except snapshot dirs being streamed to a follower.
func (n *Node) gcSnapshots() {
	ents, err := os.ReadDir(n.snapDir)
	if err != nil {
		n.log.Warn("snapshot clean-up", "err", err)
		return
	}
	var snapFiles []string
	var dbs []uint64
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".tmp"):
			if !strings.HasPrefix(name, "recv-") {
				_ = removeAll(filepath.Join(n.snapDir, name))
			}
		case strings.HasSuffix(name, ".snap"):
			snapFiles = append(snapFiles, name)
		case strings.HasPrefix(name, "db-"):
			if i, err := strconv.ParseUint(name[3:], 10, 64); err == nil {
				dbs = append(dbs, i)
			}
		}
	}
	n.removeStaleReceives()
	slices.Sort(snapFiles) // %016x-%016x: term then index, both grow together
	if len(snapFiles) > keepSnapshots {
		for _, name := range snapFiles[:len(snapFiles)-keepSnapshots] {
			_ = os.Remove(filepath.Join(n.snapDir, name))
		}
		snapFiles = snapFiles[len(snapFiles)-keepSnapshots:]
	}
	slices.Sort(dbs)
	n.mu.Lock()
	for i, idx := range dbs {
		if i < len(dbs)-keepSnapshots && n.pins[idx] == 0 {
			_ = removeAll(n.dbDir(idx))
		}
	}
	n.mu.Unlock()
	if len(snapFiles) == 0 {
		return
	}
	var term, oldest uint64
	if _, err := fmt.Sscanf(snapFiles[0], "%016x-%016x.snap", &term, &oldest); err != nil {
		return
	}
	if err := n.wal.ReleaseLockTo(oldest); err != nil {
		n.log.Warn("wal release", "err", err)
		return
	}
	n.purgeWAL()
}

// purgeWAL deletes WAL segments no longer locked by the open WAL (released above).
func (n *Node) purgeWAL() {
	dir := filepath.Join(n.cfg.Dir, "wal")
	names, err := fileutil.ReadDir(dir, fileutil.WithExt(".wal"))
	if err != nil {
		return
	}
	for _, name := range names[:max(len(names)-1, 0)] {
		path := filepath.Join(dir, name)
		l, err := fileutil.TryLockFile(path, os.O_WRONLY, fileutil.PrivateFileMode)
		if err != nil {
			return // in use by the WAL, and so is every later segment
		}
		if err := os.Remove(path); err != nil {
			l.Close()
			return
		}
		l.Close()
		n.log.Debug("purged wal segment", "file", name)
	}
}

// nodeSnaps is the Node's SnapshotStore, handed to the transport.
type nodeSnaps struct{ n *Node }

func (s nodeSnaps) OpenSnapshot(index uint64) (string, []string, func(), error) {
	n := s.n
	n.mu.Lock()
	n.pins[index]++
	n.mu.Unlock()
	release := func() {
		n.mu.Lock()
		if n.pins[index]--; n.pins[index] <= 0 {
			delete(n.pins, index)
		}
		n.mu.Unlock()
	}
	dir := n.dbDir(index)
	files, err := listFiles(dir, false)
	if err != nil {
		release()
		return "", nil, nil, err
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}
	return dir, names, release, nil
}

func (s nodeSnaps) ReceiveDir(index uint64) (string, error) {
	dir := s.n.recvDir(index)
	if err := removeAll(dir); err != nil {
		return "", err
	}
	return dir, os.MkdirAll(dir, 0o755)
}

func (s nodeSnaps) ReportUnreachable(id uint64) { s.n.raft.ReportUnreachable(id) }

func (s nodeSnaps) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	s.n.raft.ReportSnapshot(id, status)
}
