package payproxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Money is an int64 number of fen inside payproxy. Clients send it as a
// JSON integer; anything else (12.5, "1250", 1e3) is refused rather than
// converted, so no amount is ever rounded. Yuan strings exist only in the
// Alipay adapter.

// maxFen is the largest trade each provider accepts: Alipay 100,000,000.00
// yuan; WeChat's amount.total is a 32-bit integer of fen.
var maxFen = map[string]int64{
	"alipay": 10_000_000_000,
	"wechat": 2_147_483_647,
}

// parseFen reads a JSON integer amount; raw may be empty (absent).
func parseFen(raw json.RawMessage) (int64, bool, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return 0, false, nil
	}
	for i, c := range raw {
		if (c < '0' || c > '9') && !(i == 0 && c == '-') {
			return 0, true, fmt.Errorf("amount_fen must be an integer number of fen, got %s", raw)
		}
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, true, fmt.Errorf("amount_fen out of range: %s", raw)
	}
	return n, true, nil
}

// checkFen enforces 0 < fen ≤ the channel's limit.
func checkFen(channel string, fen int64) error {
	if fen <= 0 {
		return fmt.Errorf("amount_fen must be positive, got %d", fen)
	}
	if limit, ok := maxFen[channel]; ok && fen > limit {
		return fmt.Errorf("amount_fen %d is above the %s limit %d", fen, channel, limit)
	}
	return nil
}
