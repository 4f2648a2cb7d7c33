package payproxy

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Events reach the backend at least once:
//
//  1. A state-change script writes the event into the order's outbox
//     (same slot as the trade, same atomic step as the change).
//  2. The caller then copies it into the webhook queue (enqueueScript, keyed
//     by event id so copying twice is harmless) and deletes it from the
//     outbox. If the process dies in between, the order is still in the
//     due set and the poller flushes its outbox.
//  3. Senders on every instance lease due events (visibility timeout),
//     POST them signed, and ack on 2xx; failures are retried with
//     exponential backoff; after max_attempts the event moves to the
//     dead-letter list, from where ops replay it through the admin API.

// eventData is the "data" of an event.
type eventData struct {
	OrderNo   string `json:"order_no"`
	TradeNo   string `json:"trade_no"`
	Channel   string `json:"channel"`
	AmountFen int64  `json:"amount_fen"`
	State     string `json:"state"`
	RefundNo  string `json:"refund_no,omitempty"`
	// Seq numbers the order's events 1, 2, 3 … in the order its state
	// changed; the script that makes the change sets it.
	Seq int64 `json:"seq"`
}

// event is one webhook event; Body is the exact JSON that is signed and sent.
type event struct {
	ID   string
	Body string
}

// newEvent builds an event whose id is derived from what happened (the
// trade or refund and the event type), so that the same fact can never
// produce two different events.
func newEvent(typ, subject string, now time.Time, data eventData) *event {
	id := "evt_" + subject + "_" + typ
	data.Seq = -1 // numbered by the script (emitLua)
	body, _ := json.Marshal(struct {
		ID        string    `json:"id"`
		Type      string    `json:"type"`
		CreatedAt string    `json:"created_at"`
		Data      eventData `json:"data"`
	}{id, typ, now.UTC().Format(time.RFC3339), data})
	return &event{ID: id, Body: string(body)}
}

// Sign returns the X-Tollgate-Signature value for body at time t:
// "t=<unix>,v1=<hex HMAC-SHA256(secret, t + "." + body)>".
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// flushOutbox copies the order's pending events into the webhook queue.
// It reports whether the outbox is now empty.
func (p *PayProxy) flushOutbox(ctx context.Context, order string) (bool, error) {
	pending, err := p.rdb.HGetAll(ctx, outboxKey(order)).Result()
	if err != nil {
		return false, fmt.Errorf("reading outbox of order %s: %w", order, err)
	}
	for id, body := range pending {
		if err := p.enqueue(ctx, order, &event{ID: id, Body: body}); err != nil {
			return false, err
		}
	}
	return true, nil
}

// enqueue moves one event from the order's outbox to the queue. Without a
// webhook configured, events are dropped from the outbox.
func (p *PayProxy) enqueue(ctx context.Context, order string, ev *event) error {
	if p.Webhook != nil {
		err := enqueueScript.Run(ctx, p.rdb, []string{eventsKey, queueKey, tombstoneKey(ev.ID)}, ev.ID, ev.Body, time.Now().UnixMilli()).Err()
		if err != nil {
			return fmt.Errorf("queueing event %s: %w", ev.ID, err)
		}
		p.wakeSender()
	}
	if err := p.rdb.HDel(ctx, outboxKey(order), ev.ID).Err(); err != nil {
		return fmt.Errorf("clearing outbox of order %s: %w", order, err)
	}
	return nil
}

// publish is called right after a state change: it queues the event now
// (the poller covers a failure here).
func (p *PayProxy) publish(ctx context.Context, order string, ev *event) {
	if ev == nil {
		return
	}
	if err := p.enqueue(ctx, order, ev); err != nil {
		// The event stays in the order's outbox; make sure the poller
		// visits the order (a settled order may have left the due set).
		if serr := p.store.schedule(ctx, order, time.Now().Add(time.Duration(p.PollInterval))); serr != nil {
			err = errors.Join(err, serr)
		}
		p.logger.Warn("queueing event failed; the poller will retry", zap.String("order_no", order), zap.Error(err))
	}
}

func (p *PayProxy) wakeSender() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

const (
	senderTick    = 250 * time.Millisecond
	senderBatch   = 20
	deliveryLimit = 10 * time.Second
)

// runSender delivers queued events until ctx ends.
func (p *PayProxy) runSender(ctx context.Context) {
	t := time.NewTicker(senderTick)
	defer t.Stop()
	for {
		for p.deliverBatch(ctx) == senderBatch {
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.wake:
		}
	}
}

// deliverBatch leases due events and delivers them; it returns how many
// it leased. Events it could not send because the instance is shutting
// down (a config reload) are handed back at once rather than left to wait
// out their lease, so the new config's sender picks them up right away.
func (p *PayProxy) deliverBatch(ctx context.Context) int {
	now, lease := time.Now().UnixMilli(), (3 * deliveryLimit).Milliseconds()
	vals, err := claimEventsScript.Run(ctx, p.rdb, []string{queueKey, eventsKey}, now, senderBatch, lease).StringSlice()
	if err != nil {
		if ctx.Err() == nil {
			p.logger.Debug("leasing webhook events failed", zap.Error(err))
		}
		return 0
	}
	var unsent []any
	for i := 0; i+1 < len(vals); i += 2 {
		if ctx.Err() != nil || !p.deliver(ctx, vals[i], []byte(vals[i+1])) {
			unsent = append(unsent, vals[i])
		}
	}
	p.returnLeases(ctx, now+lease, unsent)
	return len(vals) / 2
}

// returnLeases makes leased events due now again, in one script, unless
// something else has rescheduled them since (their score is no longer our
// lease). It runs when ctx is already cancelled, so on a context of its own.
func (p *PayProxy) returnLeases(ctx context.Context, leaseScore int64, ids []any) {
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	args := append([]any{leaseScore, time.Now().UnixMilli()}, ids...)
	if err := returnLeasesScript.Run(ctx, p.rdb, []string{queueKey}, args...).Err(); err != nil {
		p.logger.Warn("handing back webhook leases failed; they are sent when the lease ends",
			zap.Int("events", len(ids)), zap.Error(err))
	}
}

// deliver sends one leased event and records the outcome. It returns false
// when it stopped because ctx ended (shutdown): the event is still leased
// and nothing was recorded.
func (p *PayProxy) deliver(ctx context.Context, id string, body []byte) bool {
	start := time.Now()
	err := p.post(ctx, id, body)
	if err == nil {
		p.metrics.webhook("delivered", time.Since(start))
		p.ack(ctx, id)
		return true
	}
	if ctx.Err() != nil {
		return false
	}
	p.metrics.webhook("failed", time.Since(start))
	attempts, _ := p.rdb.HGet(ctx, attemptsKey, id).Int()
	next := time.Now().Add(p.backoff(attempts + 1))
	res, ferr := failEventScript.Run(ctx, p.rdb, []string{queueKey, eventsKey, attemptsKey, deadKey, tombstoneKey(id)},
		id, p.Webhook.MaxAttempts, next.UnixMilli(), time.Now().UnixMilli(), err.Error(), p.tombstoneTTL(),
		deadLetterMaxAge.Milliseconds(), deadLetterCap).Text()
	if ferr != nil {
		p.logger.Warn("recording webhook failure failed", zap.String("event_id", id), zap.Error(ferr))
		return true
	}
	if dropped, ok := strings.CutPrefix(res, "dead:"); ok {
		p.metrics.webhook("dead_lettered", 0)
		p.logger.Error("webhook event dead-lettered", zap.String("event_id", id), zap.Error(err))
		p.deadLettersDropped(dropped)
		return true
	}
	p.logger.Debug("webhook delivery failed", zap.String("event_id", id), zap.Error(err))
	return true
}

// ack forgets a delivered event. The backend has it, so a shutdown that
// begins meanwhile must not cancel the ack (that would only send it again).
func (p *PayProxy) ack(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := ackEventScript.Run(ctx, p.rdb, []string{queueKey, eventsKey, attemptsKey, tombstoneKey(id)}, id, p.tombstoneTTL()).Err(); err != nil {
		p.logger.Warn("acknowledging webhook event failed; it will be sent again", zap.String("event_id", id), zap.Error(err))
	}
}

// backoff is the delay before attempt n+1: base·2^(n-1), capped.
func (p *PayProxy) backoff(n int) time.Duration {
	d := time.Duration(p.Webhook.Backoff)
	for i := 1; i < n && d < time.Duration(p.Webhook.MaxBackoff); i++ {
		d *= 2
	}
	return min(d, time.Duration(p.Webhook.MaxBackoff))
}

func (p *PayProxy) post(ctx context.Context, id string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, deliveryLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.webhookURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Tollgate-Event-Id", id)
	req.Header.Set("X-Tollgate-Signature", Sign(p.webhookSecret, time.Now(), body))
	resp, err := p.webhookClient.Do(req)
	if err != nil {
		// The error quotes the webhook URL, whose query may carry a token;
		// it is logged and kept in the dead-letter list: keep the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("posting the event: %w", ue.Err)
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return nil
}

// deadLettersDropped counts and logs the dead letters failEventScript
// dropped ("<for age>:<for the cap>").
func (p *PayProxy) deadLettersDropped(dropped string) {
	aged, capped, _ := strings.Cut(dropped, ":")
	for reason, n := range map[string]string{"age": aged, "cap": capped} {
		if k, _ := strconv.Atoi(n); k > 0 {
			webhookDeadDroppedTotal.WithLabelValues(reason).Add(float64(k))
			p.logger.Error("dead letters dropped: the backend never received these events",
				zap.String("reason", reason), zap.Int("count", k))
		}
	}
}
