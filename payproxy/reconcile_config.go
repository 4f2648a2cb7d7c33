package payproxy

import (
	"fmt"
	"strconv"
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
	atErr        error
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
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "at":
			err = cfgargs.One(d, &c.At)
		case "timezone":
			err = cfgargs.One(d, &c.Timezone)
		case "days":
			var s string
			if err = cfgargs.One(d, &s); err == nil {
				if c.Days, err = strconv.Atoi(s); err != nil {
					err = d.Errf("days must be an integer, got %q", s)
				}
			}
		default:
			return d.Errf("unknown reconcile subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// provision applies the defaults and resolves the time zone and the time
// of day; Validate reports what did not resolve.
func (c *ReconcileConfig) provision() {
	if c.At == "" {
		c.At = defaultReconcileAt
	}
	if c.Timezone == "" {
		c.Timezone = defaultReconcileTimezone
	}
	if c.Days == 0 {
		c.Days = defaultReconcileDays
	}
	c.loc, _ = time.LoadLocation(c.Timezone)
	c.hour, c.minute, c.atErr = reconcile.ParseAt(c.At)
}

// validate checks a provisioned block (nil: reconciliation off).
func (c *ReconcileConfig) validate() error {
	switch {
	case c == nil:
		return nil
	case c.atErr != nil:
		return fmt.Errorf("payproxy: reconcile: %w", c.atErr)
	case c.loc == nil:
		return fmt.Errorf("payproxy: reconcile: unknown timezone %q (an IANA name such as Asia/Shanghai)", c.Timezone)
	case c.Days < 1 || c.Days > maxReconcileDays:
		return fmt.Errorf("payproxy: reconcile: days must be 1 to %d, got %d", maxReconcileDays, c.Days)
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
