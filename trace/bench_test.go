package trace

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
)

// benchRows is the trace length for the streaming benchmarks: 1 M rows by
// default so `go test -bench .` stays quick; TRACE_BENCH_ROWS=10000000
// gives the 10 M-row figure.
func benchRows(b *testing.B) int {
	if s := os.Getenv("TRACE_BENCH_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("TRACE_BENCH_ROWS=%q is not a positive integer", s)
		}
		return n
	}
	return 1_000_000
}

// writeBenchTrace writes n rows with only the required facts set (the
// optional columns are all null), in chunks through one reused buffer. It
// returns the peak heap in use while writing, sampled every 64 chunks.
func writeBenchTrace(tb testing.TB, path string, n int) (peak uint64) {
	var ms runtime.MemStats
	w, err := Create(path, Metadata{Name: "bench"}, Overwrite(true))
	if err != nil {
		tb.Fatal(err)
	}
	buf := make([]Request, 8192)
	for done := 0; done < n; {
		k := min(len(buf), n-done)
		for i := range buf[:k] {
			j := done + i
			buf[i] = Request{RequestID: int64(j), ArrivalNS: int64(j) * 4999, InputTokens: int32(1 + j%4000), OutputTokens: int32(1 + j%700)}
		}
		if err := w.Write(buf[:k]); err != nil {
			tb.Fatal(err)
		}
		done += k
		if (done/len(buf))%64 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return peak
}

func BenchmarkWrite(b *testing.B) {
	n := benchRows(b)
	path := filepath.Join(b.TempDir(), "w.parquet")
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapInuse, uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		peak = max(peak, writeBenchTrace(b, path, n))
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(peak-min(peak, base))/(1<<20), "peak-heap-MiB")
	if st, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(st.Size())/float64(n), "file-B/row")
	}
}

// BenchmarkRead streams a file with a 4096-row buffer and reports rows/s
// and the peak heap in use while reading (sampled every 64 Reads), which
// must not grow with the file beyond the duplicate check's n/8 bytes.
func BenchmarkRead(b *testing.B) {
	n := benchRows(b)
	path := filepath.Join(b.TempDir(), "r.parquet")
	writeBenchTrace(b, path, n)
	buf := make([]Request, 4096)
	var peak uint64
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		rows, calls := 0, 0
		for {
			k, err := r.Read(buf)
			rows += k
			if calls++; calls%64 == 0 {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		r.Close()
		if rows != n {
			b.Fatalf("read %d rows, want %d", rows, n)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(peak-min(peak, base))/(1<<20), "peak-heap-MiB")
}
