package consensus

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
	"unsafe"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
)

// Zero-filled WAL segments.
//
// etcd's WAL preallocates each 64 MB segment with fallocate, which leaves unwritten extents.
// Every append converts some of them to written ones, a metadata change, so every fdatasync
// of the WAL also commits ext4's journal, which the whole file system shares. Where the
// blocks already hold written zeros, fdatasync writes the data and nothing else.
// BenchmarkAppendSync measures it (12 KiB appends, one fdatasync each; on the development
// VM's ext4, p50 0.15–0.18 ms into fallocated space against 0.09–0.10 ms into zero-filled
// space; with three writers at once, as three nodes on one disk, 0.23–0.24 against
// 0.15–0.17 ms).
//
// Writing zeros over bytes that read as zeros changes nothing etcd can read, provided
// nothing else writes to the file at the same time. Tandem does it in two places:
//
//   - zeroWALTail, before the Raft loop starts: the end of the newest segment, after its
//     last non-zero byte (etcd zeroes that part itself when it opens a WAL for appending);
//   - prepareNextSegment, in the background: etcd takes each new segment from a pipeline
//     that opens "0.tmp" or "1.tmp" (alternately) without truncating it and preallocates it,
//     which leaves a file that already has its full size as it is. Tandem writes a
//     zero-filled file under another name and links it to the name etcd will open next, if
//     that name does not exist yet. The link is atomic and never replaces a file, so etcd
//     gets either our file, complete, or its own.
//
// Should a later etcd version truncate or rename differently, the segments are simply
// preallocated again: this is a speed-up, never needed for correctness.

// zeroScratch is the name a segment is zero-filled under before it is linked into place. The
// ".tmp" suffix makes etcd ignore it when it lists the WAL directory.
const zeroScratch = "zero-fill.tmp"

// zeroWALTail writes zeros over the end of the newest segment in dir, after its last
// non-zero byte. Nothing may write to the WAL meanwhile.
func zeroWALTail(dir string) error {
	segs, err := fileutil.ReadDir(dir, fileutil.WithExt(".wal")) // sorted: sequence order
	if err != nil || len(segs) == 0 {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, segs[len(segs)-1]), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	end, err := zeroTailStart(f, st.Size())
	if err != nil {
		return err
	}
	if err := writeZeros(f, end, st.Size(), 0, nil); err != nil {
		return err
	}
	return f.Sync()
}

// zeroTailStart returns the offset of the first page of f after its last non-zero byte.
func zeroTailStart(f *os.File, size int64) (int64, error) {
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	end := size
	for end > 0 {
		off := max(end-chunk, 0)
		n, err := f.ReadAt(buf[:end-off], off)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("consensus: read wal segment: %w", err)
		}
		if i := lastNonZero(buf[:n]); i >= 0 {
			end = off + int64(i) + 1
			break
		}
		end = off
	}
	const page = 4096
	return (end + page - 1) / page * page, nil
}

// zeroChunk is the step in which zeros are written.
const zeroChunk = 1 << 20

// writeZeros writes zeros to f over [from, to) through the page cache. With pace set it syncs
// each step and pauses between steps, so that the disk sees a trickle instead of a burst that
// would hold up the WAL's own fsyncs (this runs beside a live node). Starting the write-back
// with sync_file_range instead of fsync measured worse: single-writer p99 twice as high.
func writeZeros(f *os.File, from, to int64, pace time.Duration, stop <-chan struct{}) error {
	return zeroSteps(f, make([]byte, zeroChunk), from, to, pace, pace > 0, stop)
}

// zeroSteps writes zeros (a buffer of zeroChunk zero bytes) to f over [from, to) in steps,
// syncing after each if syncEach, pausing pace between steps, and giving up when stop closes.
func zeroSteps(f *os.File, zeros []byte, from, to int64, pace time.Duration, syncEach bool, stop <-chan struct{}) error {
	for off := from; off < to; off += zeroChunk {
		select {
		case <-stop:
			return ErrStopped
		default:
		}
		n := min(zeroChunk, to-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return fmt.Errorf("consensus: zero-fill %s: %w", f.Name(), err)
		}
		if syncEach {
			if err := f.Sync(); err != nil {
				return err
			}
		}
		if pace > 0 {
			select {
			case <-stop:
				return ErrStopped
			case <-time.After(pace):
			}
		}
	}
	return nil
}

// nextSegmentName returns the name etcd's segment pipeline will open next when it can be
// prepared: etcd holds one of "0.tmp" and "1.tmp" (its current spare) and the other is
// absent. Before etcd opens the WAL (first), its pipeline starts with "0.tmp".
func nextSegmentName(dir string, first bool) (string, error) {
	exists := func(name string) (bool, error) {
		_, err := os.Lstat(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return err == nil, err
	}
	have0, err := exists("0.tmp")
	if err != nil {
		return "", err
	}
	have1, err := exists("1.tmp")
	if err != nil {
		return "", err
	}
	switch {
	case first && !have0:
		return "0.tmp", nil
	case first:
		return "", nil
	case have0 && !have1:
		return "1.tmp", nil
	case have1 && !have0:
		return "0.tmp", nil
	}
	return "", nil // both ready, or etcd is between taking one and creating the next
}

// linkZeroSegment writes a zero-filled file of size bytes and links it to dir/name unless
// that exists by then. It reports whether it linked it.
func linkZeroSegment(dir, name string, size int64, pace time.Duration, stop <-chan struct{}) (bool, error) {
	scratch := filepath.Join(dir, zeroScratch)
	defer os.Remove(scratch)
	f, direct, err := createZeroScratch(scratch, size)
	if err != nil {
		return false, err
	}
	if direct {
		err = writeZerosDirect(f, size, pace, stop)
	} else {
		err = writeZeros(f, 0, size, pace, stop)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	if err := os.Link(scratch, filepath.Join(dir, name)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil // etcd created it first and preallocates it its own way
		}
		return false, err
	}
	return true, nil
}

// directPage is the alignment O_DIRECT asks of offsets, lengths and buffers (the logical
// block size of every disk Tandem expects; a file system that wants more refuses the open
// or the first write, and the buffered path takes over).
const directPage = 4096

// createZeroScratch creates the scratch file for a spare segment, for direct I/O where the
// file system allows it (and the size is whole pages). Direct writes of the zeros cost the
// node no page-cache copies and leave no dirty pages for the kernel to write back later,
// in bursts that the WAL's fsyncs would queue behind.
func createZeroScratch(path string, size int64) (f *os.File, direct bool, err error) {
	const flags = os.O_CREATE | os.O_TRUNC | os.O_WRONLY
	if directIO != 0 && size%directPage == 0 {
		if f, err := os.OpenFile(path, flags|directIO, 0o600); err == nil {
			return f, true, nil
		}
	}
	f, err = os.OpenFile(path, flags, 0o600)
	return f, false, err
}

// writeZerosDirect writes size bytes of zeros to a file opened for direct I/O (see
// zeroSteps). Each write reaches the disk before it returns, so the pause alone paces the
// disk; one fsync at the end (the caller's) makes the file's size and blocks durable. A file
// system that refuses the direct writes (EINVAL) gets the buffered path instead.
func writeZerosDirect(f *os.File, size int64, pace time.Duration, stop <-chan struct{}) error {
	raw := make([]byte, zeroChunk+directPage)
	skip := (directPage - int(uintptr(unsafe.Pointer(&raw[0]))%directPage)) % directPage
	err := zeroSteps(f, raw[skip:skip+zeroChunk], 0, size, pace, false, stop)
	if errors.Is(err, syscall.EINVAL) {
		return writeZerosBuffered(f, size, pace, stop)
	}
	return err
}

// writeZerosBuffered reopens a direct-I/O file without O_DIRECT and zero-fills it through
// the page cache.
func writeZerosBuffered(f *os.File, size int64, pace time.Duration, stop <-chan struct{}) error {
	g, err := os.OpenFile(f.Name(), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = writeZeros(g, 0, size, pace, stop)
	if err == nil {
		err = g.Sync()
	}
	if cerr := g.Close(); err == nil {
		err = cerr
	}
	return err
}

// prepareNextSegment zero-fills the segment etcd opens next, if it can be prepared now.
func prepareNextSegment(dir string, size int64, first bool, pace time.Duration, stop <-chan struct{}) (bool, error) {
	name, err := nextSegmentName(dir, first)
	if err != nil || name == "" {
		return false, err
	}
	return linkZeroSegment(dir, name, size, pace, stop)
}

// segmentPace is the pause between the 1 MiB steps of zero-filling a segment beside a live
// node (64 MB: about a third of a second).
const segmentPace = 2 * time.Millisecond

// prepareSegments keeps the next WAL segment zero-filled while the node runs. It starts on
// one only once half a segment has been logged since the last one (or since the start): the
// segment it prepares is needed after the next cut at the earliest, and filling it costs
// disk time that the log's own fsyncs wait for.
func (n *Node) prepareSegments(dir string, size int64, every time.Duration) {
	defer n.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	failures := 0
	var since uint64 // n.walBytes at the last preparation
	for {
		select {
		case <-t.C:
		case <-n.stopc:
			return
		}
		logged := n.walBytes.Load()
		if logged-since < uint64(size)/2 {
			continue
		}
		linked, err := prepareNextSegment(dir, size, false, segmentPace, n.stopc)
		if linked {
			since = logged
			n.segmentsZeroed.Add(1)
		}
		switch {
		case errors.Is(err, ErrStopped):
			return
		case err != nil:
			// Disk full or the like: etcd's own preallocation will fail or succeed on its
			// own; say so once in a while and keep trying.
			if failures%60 == 0 {
				n.log.Warn("could not zero-fill the next WAL segment", "err", err)
			}
			failures++
		case linked:
			n.log.Debug("next WAL segment zero-filled", "dir", dir)
		}
	}
}

func lastNonZero(b []byte) int {
	var zeroPage [4096]byte
	for len(b) > 0 {
		k := max(len(b)-len(zeroPage), 0)
		if !bytes.Equal(b[k:], zeroPage[:len(b)-k]) {
			for i := len(b) - 1; i >= k; i-- {
				if b[i] != 0 {
					return i
				}
			}
		}
		b = b[:k]
	}
	return -1
}
