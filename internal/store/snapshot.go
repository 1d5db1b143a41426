package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// manifestFile describes a snapshot directory.
const manifestFile = "MANIFEST.json"

type manifest struct {
	Version   int                `json:"version"`
	Index     uint64             `json:"index"` // store applied index when the copy was made
	Databases []manifestDatabase `json:"databases"`
}

type manifestDatabase struct {
	Name  string `json:"name"`
	Index uint64 `json:"index"` // the database's own applied index in the copy
}

// SaveSnapshot writes a consistent copy of every database to the empty directory dir
// (VACUUM INTO dir/<name>.sqlite) and a manifest, and makes the live state durable up to the
// current applied index. Called between Apply calls.
func (s *Store) SaveSnapshot(dir string) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	if err := s.unavailableLocked(); err != nil {
		s.mu.Unlock()
		return err
	}
	applied := s.applied
	var dbs []*database
	for _, db := range s.dbs {
		if db.applied.Load() > 0 {
			dbs = append(dbs, db)
		}
	}
	s.mu.Unlock()

	m := manifest{Version: 1, Index: applied}
	for _, db := range dbs {
		path := filepath.Join(dir, db.name+".sqlite")
		if err := db.applyConn.Exec("VACUUM INTO ?", path); err != nil {
			return fmt.Errorf("store: snapshot of %s: %w", db.name, err)
		}
		if err := syncFile(path); err != nil {
			return fmt.Errorf("store: snapshot of %s: %w", db.name, err)
		}
		// A checkpoint syncs the WAL: everything applied so far is durable.
		if err := db.applyConn.Exec("PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
			return fmt.Errorf("store: checkpoint %s: %w", db.name, err)
		}
		m.Databases = append(m.Databases, manifestDatabase{Name: db.name, Index: db.applied.Load()})
	}
	b, err := json.MarshalIndent(&m, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, manifestFile), b); err != nil {
		return fmt.Errorf("store: snapshot manifest: %w", err)
	}
	if err := s.writeFloor(applied); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// RestoreSnapshot replaces every database with the copies in dir (made by SaveSnapshot),
// moving them into place, and sets the applied index to index. Databases absent from the
// snapshot are removed. Requests queued or in flight fail (ErrClosed, ErrOutcomeUnknown).
func (s *Store) RestoreSnapshot(dir string, index uint64) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	b, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if err != nil {
		return fmt.Errorf("store: snapshot manifest: %w", err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("store: snapshot manifest: %w", err)
	}
	if m.Version != 1 {
		return fmt.Errorf("store: snapshot manifest version %d not supported", m.Version)
	}
	keep := map[string]bool{}
	for _, d := range m.Databases {
		if !validName(d.Name) {
			return fmt.Errorf("store: snapshot manifest: %w: %q", ErrBadName, d.Name)
		}
		if err := syncFile(filepath.Join(dir, d.Name+".sqlite")); err != nil {
			return fmt.Errorf("store: snapshot file: %w", err)
		}
		keep[d.Name] = true
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.restoring = true
	s.failWaitersLocked(func(proposalKey) bool { return true },
		fmt.Errorf("%w: a snapshot is being restored", ErrOutcomeUnknown))
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.restoring = false
		s.mu.Unlock()
	}()

	if err := writeFileAtomic(filepath.Join(s.opts.Dir, restoringFile), nil); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := s.closeDatabases(errReplaced); err != nil {
		s.log.Warn("store: closing databases before a restore", "err", err)
	}
	existing, err := s.listFiles(s.dbDir)
	if err != nil {
		return err
	}
	for _, name := range existing {
		base := filepath.Join(s.dbDir, name+".sqlite")
		for _, suffix := range []string{"-wal", "-shm", "-journal"} {
			if err := os.Remove(base + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("store: %w", err)
			}
		}
		if !keep[name] {
			if err := os.Remove(base); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("store: %w", err)
			}
		}
	}
	for name := range keep {
		if err := os.Rename(filepath.Join(dir, name+".sqlite"), filepath.Join(s.dbDir, name+".sqlite")); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	if err := syncDir(s.dbDir); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := s.writeFloor(index); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	names, err := s.listFiles(s.dbDir)
	if err != nil {
		return err
	}
	opened := map[string]*database{}
	for _, name := range names {
		db, err := openDatabase(s, name)
		if err != nil {
			for _, d := range opened {
				d.close(ErrClosed)
			}
			return err
		}
		opened[name] = db
	}
	if err := os.Remove(filepath.Join(s.opts.Dir, restoringFile)); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := syncDir(s.opts.Dir); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	s.mu.Lock()
	s.dbs = opened
	s.applied = index
	close(s.appliedC)
	s.appliedC = make(chan struct{})
	s.mu.Unlock()
	return nil
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
