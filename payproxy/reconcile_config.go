package payproxy

import (
	"fmt"
	"time"
	_ "time/tzdata" // the bill day's time zone loads on hosts without zoneinfo

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/tollgate/tollgate/internal/cfgargs"
	"github.com/tollgate/tollgate/payproxy/reconcile"
)

// ReconcileConfig turns on the daily reconciliation of the providers'
// bills with the trade ledger: once a day across every instance sharing
// the Redis, each channel's bills of the last Days completed days are
// compared with tollgate's records; what a signed query confirms is
// healed, every difference is reported (admin API, webhook event
// reconcile.discrepancy, metric tollgate_payproxy_reconcile_differences).
// Runs on demand (admin API, `tollgate payproxy reconcile`) need no block.
type ReconcileConfig struct {
	// Local time of day of the daily run, HH:MM in Timezone. A bill that is
	// not ready yet is asked for again every 20 minutes until the end of
	// that day. Default: 10:30 (Alipay's bill is ready "before 09:00",
	// WeChat Pay's "after 10:00", Beijing time).
	At string `json:"at,omitempty"`
	// Time zone of At and of the bill day (IANA name). Both providers' bill
	// days are Beijing days. Default: Asia/Shanghai
	Timezone string `json:"timezone,omitempty"`
	// How many completed days each daily run reconciles: yesterday and the
	// days before it, so that late rows are caught. 1 to 90. Default: 3
	Days int `json:"days,omitempty"`

	loc          *time.Location
	hour, minute int
}

const (
	defaultReconcileAt       = "10:30"
	defaultReconcileTimezone = "Asia/Shanghai"
	defaultReconcileDays     = 3
	maxReconcileDays         = 90
)

// unmarshal reads the reconcile block:
//
//	reconcile {
//	    at 10:30
//	    timezone Asia/Shanghai
//	    days 3
//	}
func (c *ReconcileConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return unmarshalOptions(d, "reconcile", map[string]func(*caddyfile.Dispenser) error{
		"at":       func(d *caddyfile.Dispenser) error { return cfgargs.One(d, &c.At) },
		"timezone": func(d *caddyfile.Dispenser) error { return cfgargs.One(d, &c.Timezone) },
		"days":     func(d *caddyfile.Dispenser) error { return cfgargs.IntArg(d, &c.Days) },
	}, map[string]string{"time": "at", "tz": "timezone", "zone": "timezone"})
}

// applyDefaults fills the block's unset settings (nil: reconciliation off).
func (c *ReconcileConfig) applyDefaults() {
	if c == nil {
		return
	}
	if c.At == "" {
		c.At = defaultReconcileAt
	}
	if c.Timezone == "" {
		c.Timezone = defaultReconcileTimezone
	}
	if c.Days == 0 {
		c.Days = defaultReconcileDays
	}
}

// provision resolves the time zone and the time of day of a validated
// block.
func (c *ReconcileConfig) provision() {
	c.applyDefaults()
	c.loc, _ = time.LoadLocation(c.Timezone)
	c.hour, c.minute, _ = reconcile.ParseAt(c.At)
}

// validate checks the block's settings (nil: reconciliation off); it only
// reads.
func (c *ReconcileConfig) validate() error {
	if c == nil {
		return nil
	}
	if _, _, err := reconcile.ParseAt(c.At); err != nil {
		return fmt.Errorf("reconcile %w", err)
	}
	if _, err := time.LoadLocation(c.Timezone); err != nil {
		return fmt.Errorf("reconcile timezone %s: unknown time zone (an IANA name such as Asia/Shanghai)", c.Timezone)
	}
	if c.Days < 1 || c.Days > maxReconcileDays {
		return fmt.Errorf("reconcile days %d: must be 1 to %d", c.Days, maxReconcileDays)
	}
	return nil
}

// reconcileLocation is the bill day's time zone of this route: its
// reconcile block's, or Beijing's for runs on demand without one.
func (p *PayProxy) reconcileLocation() *time.Location {
	if p.Reconcile != nil && p.Reconcile.loc != nil {
		return p.Reconcile.loc
	}
	loc, err := time.LoadLocation(defaultReconcileTimezone)
	if err != nil {
		return time.FixedZone("CST", 8*3600)
	}
	return loc
}
