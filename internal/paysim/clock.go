package paysim

import (
	"context"
	"sync"
	"time"
)

// clock is the providers' business time: the real clock plus an offset
// that tests move forward (Advance), so that a QR code's two-hour scan
// window, a trade's timeout or a retry schedule of hours can pass without
// waiting. Signature timestamps stay on the real clock: they are about two
// machines agreeing on the time, which moving paysim's clock does not
// change (the stale_timestamp fault is how a test gets a stale one).
type clock struct {
	mu      sync.Mutex
	offset  time.Duration
	changed chan struct{} // closed and replaced by every advance
}

func newClock() *clock { return &clock{changed: make(chan struct{})} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// advance moves the clock forward by d and wakes every waiter.
func (c *clock) advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
	close(c.changed)
	c.changed = make(chan struct{})
	return time.Now().Add(c.offset)
}

// until returns how long, in real time, until the clock reads deadline,
// and a channel closed when the clock is moved.
func (c *clock) until(deadline time.Time) (time.Duration, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return deadline.Sub(time.Now().Add(c.offset)), c.changed
}

// waitUntil blocks until the clock reads deadline (true) or ctx ends
// (false).
func (c *clock) waitUntil(ctx context.Context, deadline time.Time) bool {
	for {
		left, changed := c.until(deadline)
		if left <= 0 {
			return true
		}
		t := time.NewTimer(left)
		select {
		case <-t.C:
		case <-changed:
		case <-ctx.Done():
			t.Stop()
			return false
		}
		t.Stop()
	}
}

// Now is the simulator's clock: real time plus every Advance.
func (s *Sim) Now() time.Time { return s.clock.now() }

// Advance moves the simulator's clock forward by d (d > 0) and returns the
// new time: expiries, QR scan windows, refund completions and notification
// retries that fall due run at once.
func (s *Sim) Advance(d time.Duration) time.Time {
	if d <= 0 {
		return s.clock.now()
	}
	now := s.clock.advance(d)
	s.mu.Lock()
	for _, t := range s.order {
		s.expireIfDue(t, now)
	}
	s.mu.Unlock()
	return now
}

func (s *Sim) now() time.Time { return s.clock.now() }
