package server

import (
	"context"
	"testing"
	"time"
)

// A cursor no page was asked of for CursorIdleTimeout is closed; one read now and then stays.
func TestIdleCursorsExpire(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ss := &session{srv: &Server{cfg: Config{CursorIdleTimeout: 500 * time.Millisecond}}, ctx: ctx,
		cursors: map[uint64]*cursor{1: {}, 2: {}}}
	for _, c := range ss.cursors {
		c.used.Store(time.Now().UnixNano())
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ss.expireCursors()
	}()
	for range 60 { // 1.2 s: cursor 2 is read every 20 ms, cursor 1 never
		time.Sleep(20 * time.Millisecond)
		ss.mu.Lock()
		if c := ss.cursors[2]; c != nil {
			c.used.Store(time.Now().UnixNano())
		}
		ss.mu.Unlock()
	}
	ss.mu.Lock()
	_, has1 := ss.cursors[1]
	_, has2 := ss.cursors[2]
	ss.mu.Unlock()
	cancel()
	<-done
	if has1 || !has2 {
		t.Fatalf("after 1.2 s with a 500 ms idle timeout: idle cursor open %v, read cursor open %v", has1, has2)
	}
}
