package queue

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSQLiteEnqueue compares the store's group commit with a baseline
// of one transaction per insert on the same schema and pragmas, for 1, 16
// and 64 concurrent producers, in both sync modes. Each producer enqueues
// one 512-byte job at a time and waits for its commit, as an engine
// connection does. Reported: enqueues/s for each and their ratio.
//
//	go test -run '^$' -bench SQLiteEnqueue -benchtime 4000x ./internal/queue/
func BenchmarkSQLiteEnqueue(b *testing.B) {
	payload := make([]byte, 512)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	for _, mode := range []string{SyncNormal, SyncFull} {
		for _, producers := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("sync=%s/producers=%d", mode, producers), func(b *testing.B) {
				group := benchEnqueue(b, producers, b.N, func(dir string) (func(i int) error, func()) {
					s, err := OpenSQLite(dir, mode)
					if err != nil {
						b.Fatal(err)
					}
					return func(i int) error {
						_, err := s.Enqueue(context.Background(), []NewJob{{ID: strconv.Itoa(i), Queue: "q", FunctionID: "f", Data: payload, VisibleAt: time.Now()}})
						return err
					}, func() { s.Close() }
				})
				base := benchEnqueue(b, producers, b.N, func(dir string) (func(i int) error, func()) {
					return rawInserter(b, dir, mode, payload)
				})
				b.ReportMetric(group, "group-enq/s")
				b.ReportMetric(base, "percommit-enq/s")
				b.ReportMetric(group/base, "ratio")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// benchEnqueue runs n enqueues from producers goroutines against a fresh
// store and returns enqueues per second.
func benchEnqueue(b *testing.B, producers, n int, open func(dir string) (func(i int) error, func())) float64 {
	b.Helper()
	enqueue, closeFn := open(b.TempDir())
	defer closeFn()
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > n {
					return
				}
				if err := enqueue(i); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// rawInserter is the baseline: the same table, one transaction (and, with
// SyncFull, one fsync) per insert on a single connection.
func rawInserter(b *testing.B, dir, mode string, payload []byte) (func(i int) error, func()) {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+mode+")")
	q.Add("_pragma", "busy_timeout(10000)")
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "raw.db")+"?"+q.Encode())
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		b.Fatal(err)
	}
	stmt, err := db.Prepare(writerStmts["insert"])
	if err != nil {
		b.Fatal(err)
	}
	return func(i int) error {
			now := time.Now().UnixMilli()
			_, err := stmt.Exec(strconv.Itoa(i), "q", "f", "", payload, "", "", now, now, stateReady, 0)
			return err
		}, func() {
			stmt.Close()
			db.Close()
		}
}
