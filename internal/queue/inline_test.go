package queue

import (
	"bytes"
	"context"
	"database/sql"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

func goid() int {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	n, _ := strconv.Atoi(string(b[:bytes.IndexByte(b, ' ')]))
	return n
}

// TestWriteAsyncInline: a write marked WithInlineCommit is committed and
// answered on the caller's goroutine when the writer is idle (SyncNormal),
// goes to the writer when it is busy or with SyncFull, and writes from one
// submitter are answered in submission order whichever way each went.
func TestWriteAsyncInline(t *testing.T) {
	nop := func(context.Context, *sql.Conn) error { return nil }
	inline := WithInlineCommit(context.Background())
	// answeredOn submits one write and returns the goroutine its answer ran on.
	answeredOn := func(s *SQLite, ctx context.Context) int {
		ch := make(chan int, 1)
		s.WriteAsync(ctx, nop, func(err error) {
			if err != nil {
				t.Error(err)
			}
			ch <- goid()
		})
		select {
		case g := <-ch:
			return g
		case <-time.After(10 * time.Second):
			t.Fatal("write not answered")
		}
		return 0
	}

	s, err := OpenSQLite(t.TempDir(), SyncNormal)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	me := goid()
	if g := answeredOn(s, inline); g != me {
		t.Fatalf("idle writer: the marked write was answered on goroutine %d, not the caller's %d", g, me)
	}
	if g := answeredOn(s, context.Background()); g == me {
		t.Fatal("an unmarked write was committed on the caller's goroutine")
	}

	// The writer busy in an operation: the marked write waits for it.
	hold, held := make(chan struct{}), make(chan struct{})
	var order []string
	var mu sync.Mutex
	note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	s.WriteAsync(context.Background(), func(context.Context, *sql.Conn) error { close(held); <-hold; return nil }, func(error) { note("first") })
	<-held
	second := make(chan int, 1)
	s.WriteAsync(inline, nop, func(error) { note("second"); second <- goid() })
	close(hold)
	if g := <-second; g == me {
		t.Fatal("a marked write committed on the caller's goroutine while the writer was busy")
	}
	if len(order) != 2 || order[0] != "first" {
		t.Fatalf("answers %v", order)
	}

	// Order: one submitter mixing marked and unmarked writes, while
	// another keeps the writer busy now and then.
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			d := make(chan struct{})
			s.WriteAsync(context.Background(), nop, func(error) { close(d) })
			<-d
		}
	}()
	const n = 3000
	var got []int
	all := make(chan struct{})
	for i := range n {
		ctx := context.Background()
		if i%3 != 0 {
			ctx = inline
		}
		s.WriteAsync(ctx, nop, func(err error) {
			if err != nil {
				t.Errorf("write %d: %v", i, err)
			}
			mu.Lock()
			got = append(got, i)
			if len(got) == n {
				close(all)
			}
			mu.Unlock()
		})
	}
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		t.Fatal("not all writes answered")
	}
	close(stop)
	bg.Wait()
	for k, i := range got {
		if k != i {
			t.Fatalf("answer %d is write %d's: out of submission order", k, i)
		}
	}

	full, err := OpenSQLite(t.TempDir(), SyncFull)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	if g := answeredOn(full, inline); g == me {
		t.Fatal("SyncFull: a marked write was committed on the caller's goroutine")
	}
}
