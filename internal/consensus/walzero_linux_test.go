package consensus

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
)

// unwrittenBytes returns how many bytes of path lie in unwritten (preallocated) extents,
// using the FIEMAP ioctl.
func unwrittenBytes(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const (
		fsIocFiemap       = 0xC020660B
		fiemapFlagSync    = 0x1
		fiemapExtentLast  = 0x1
		fiemapUnwritten   = 0x800
		extentsPerRequest = 64
	)
	type extent struct {
		Logical, Physical, Length uint64
		_                         [2]uint64
		Flags                     uint32
		_                         [3]uint32
	}
	type request struct {
		Start, Length           uint64
		Flags, Mapped, Count, _ uint32
		Extents                 [extentsPerRequest]extent
	}
	var total int64
	start := uint64(0)
	for {
		req := request{Start: start, Length: ^uint64(0), Flags: fiemapFlagSync, Count: extentsPerRequest}
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&req))); errno != 0 {
			t.Fatalf("FIEMAP on %s: %v (the file system must report extents for this test)", path, errno)
		}
		if req.Mapped == 0 {
			return total
		}
		for _, e := range req.Extents[:req.Mapped] {
			if e.Flags&fiemapUnwritten != 0 {
				total += int64(e.Length)
			}
			start = e.Logical + e.Length
			if e.Flags&fiemapExtentLast != 0 {
				return total
			}
		}
	}
}

func TestZeroWALTailKeepsContent(t *testing.T) {
	dir := t.TempDir()
	const size = 4 << 20
	data := bytes.Repeat([]byte("record!"), 1000) // 7000 bytes, not page aligned
	older := filepath.Join(dir, "0000000000000000-0000000000000000.wal")
	newest := filepath.Join(dir, "0000000000000001-0000000000000010.wal")
	for _, p := range []string{older, newest} {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(data, 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if unwrittenBytes(t, newest) == 0 {
		t.Fatal("a fallocated file reports no unwritten extents: the check below would prove nothing")
	}
	if err := zeroWALTail(dir); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Clone(data), make([]byte, size-len(data))...)
	if !bytes.Equal(got, want) {
		t.Fatal("zero-filling changed the segment's content")
	}
	if n := unwrittenBytes(t, newest); n != 0 {
		t.Fatalf("%d bytes of the newest segment still unwritten", n)
	}
	if unwrittenBytes(t, older) == 0 {
		t.Fatal("an older segment was zero-filled too; only the newest is appended to")
	}
}

func TestPrepareNextSegment(t *testing.T) {
	dir := t.TempDir()
	const size = 3<<20 + 100
	// Before etcd opens the WAL, its pipeline will create "0.tmp" first.
	if linked, err := prepareNextSegment(dir, size, true, 0, nil); err != nil || !linked {
		t.Fatalf("first segment: linked %v, %v", linked, err)
	}
	check := func(name string) {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != size || !bytes.Equal(got, make([]byte, size)) {
			t.Fatalf("%s: %d bytes, not all zero", name, len(got))
		}
		if n := unwrittenBytes(t, filepath.Join(dir, name)); n != 0 {
			t.Fatalf("%s: %d bytes unwritten", name, n)
		}
	}
	check("0.tmp")
	// etcd holds "0.tmp": the next is "1.tmp".
	if linked, err := prepareNextSegment(dir, size, false, 1, nil); err != nil || !linked {
		t.Fatalf("next segment: linked %v, %v", linked, err)
	}
	check("1.tmp")
	// Both there: nothing to do.
	if linked, err := prepareNextSegment(dir, size, false, 0, nil); err != nil || linked {
		t.Fatalf("both present: linked %v, %v", linked, err)
	}
	// etcd took "0.tmp" (renamed it to a segment) and holds "1.tmp": "0.tmp" is next.
	if err := os.Rename(filepath.Join(dir, "0.tmp"), filepath.Join(dir, "0000000000000001-0000000000000002.wal")); err != nil {
		t.Fatal(err)
	}
	if linked, err := prepareNextSegment(dir, size, false, 0, nil); err != nil || !linked {
		t.Fatalf("after a cut: linked %v, %v", linked, err)
	}
	check("0.tmp")
	// Neither there (etcd between taking one and creating the next): wait.
	os.Remove(filepath.Join(dir, "0.tmp"))
	os.Remove(filepath.Join(dir, "1.tmp"))
	if linked, err := prepareNextSegment(dir, size, false, 0, nil); err != nil || linked {
		t.Fatalf("neither present: linked %v, %v", linked, err)
	}
	// A file etcd created first is never replaced.
	mine := []byte("etcd's own file")
	if err := os.WriteFile(filepath.Join(dir, "1.tmp"), mine, 0o600); err != nil {
		t.Fatal(err)
	}
	if linked, err := linkZeroSegment(dir, "1.tmp", size, 0, nil); err != nil || linked {
		t.Fatalf("existing name: linked %v, %v", linked, err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "1.tmp")); !bytes.Equal(got, mine) {
		t.Fatalf("existing file replaced: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, zeroScratch)); !os.IsNotExist(err) {
		t.Fatalf("scratch file left behind: %v", err)
	}
	// Stopping abandons the work.
	stop := make(chan struct{})
	close(stop)
	os.Remove(filepath.Join(dir, "1.tmp"))
	if _, err := linkZeroSegment(dir, "1.tmp", size, 1, stop); err != ErrStopped {
		t.Fatalf("stopped: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "1.tmp")); !os.IsNotExist(err) {
		t.Fatalf("a stopped preparation linked its file: %v", err)
	}
}

// A spare segment of whole pages is written with direct I/O where the file system takes
// it, and reads back as written zeros either way; one of odd size goes through the page cache.
func TestZeroSegmentDirectIO(t *testing.T) {
	dir := t.TempDir()
	probe := filepath.Join(dir, "probe")
	canDirect := false
	if f, err := os.OpenFile(probe, os.O_CREATE|os.O_WRONLY|syscall.O_DIRECT, 0o600); err == nil {
		f.Close()
		canDirect = true
	}
	for _, size := range []int64{3<<20 + 2*directPage, 3<<20 + 100} {
		f, direct, err := createZeroScratch(filepath.Join(dir, "scratch"), size)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if want := canDirect && size%directPage == 0; direct != want {
			t.Fatalf("size %d: direct I/O %v, want %v (the file system takes O_DIRECT: %v)", size, direct, want, canDirect)
		}
		name := fmt.Sprintf("%d.tmp", size)
		if linked, err := linkZeroSegment(dir, name, size, time.Microsecond, nil); err != nil || !linked {
			t.Fatalf("size %d: linked %v, %v", size, linked, err)
		}
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(got)) != size || !bytes.Equal(got, make([]byte, size)) {
			t.Fatalf("size %d: %d bytes, not all zero", size, len(got))
		}
		if n := unwrittenBytes(t, filepath.Join(dir, name)); n != 0 {
			t.Fatalf("size %d: %d bytes unwritten", size, n)
		}
	}
	t.Logf("direct I/O available here: %v", canDirect)
}

// BenchmarkAppendSync measures what zero-filling WAL segments is for: a 12 KiB append (a
// group-commit entry of ~10 rows) followed by fdatasync, into space preallocated the way
// etcd does it (fallocate: unwritten extents) and into zero-filled space, with 1 and 3
// writers on separate files (three nodes on one disk). It reports the p50 of one append and
// sync; the file system under the test's temporary directory is the one measured.
//
//	go test -run '^$' -bench AppendSync ./internal/consensus
func BenchmarkAppendSync(b *testing.B) {
	const appendSize = 12 << 10
	for _, kind := range []string{"fallocated", "zero-filled"} {
		for _, files := range []int{1, 3} {
			b.Run(fmt.Sprintf("%s/files=%d", kind, files), func(b *testing.B) {
				dir := b.TempDir()
				// Room for every append of this run: nothing is written twice.
				size := (int64(b.N/files+1)*appendSize + 1<<20 - 1) &^ (1<<20 - 1)
				fs := make([]*os.File, files)
				for i := range fs {
					f, err := os.OpenFile(filepath.Join(dir, fmt.Sprint(i)), os.O_CREATE|os.O_RDWR, 0o600)
					if err != nil {
						b.Fatal(err)
					}
					defer f.Close()
					if kind == "fallocated" {
						err = fileutil.Preallocate(f, size, true)
					} else {
						err = writeZeros(f, 0, size, 0, nil)
					}
					if err == nil {
						err = f.Sync()
					}
					if err != nil {
						b.Fatal(err)
					}
					fs[i] = f
				}
				buf := bytes.Repeat([]byte{1}, appendSize)
				lat := make([][]time.Duration, files)
				var wg sync.WaitGroup
				b.ResetTimer()
				for i, f := range fs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						off := int64(0)
						for n := i; n < b.N; n += files {
							t := time.Now()
							_, err := f.WriteAt(buf, off)
							if err == nil {
								err = syscall.Fdatasync(int(f.Fd()))
							}
							if err != nil {
								b.Error(err)
								return
							}
							lat[i] = append(lat[i], time.Since(t))
							off += appendSize
						}
					}()
				}
				wg.Wait()
				var all []time.Duration
				for _, l := range lat {
					all = append(all, l...)
				}
				if len(all) > 0 {
					slices.Sort(all)
					b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs/sync")
				}
			})
		}
	}
}
