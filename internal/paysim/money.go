package paysim

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Amounts are integer fen inside. Both providers allow [0.01, 100000000] yuan.
const (
	minFen int64 = 1
	maxFen int64 = 100000000 * 100
)

var (
	errAmountFormat = errors.New("amount must be a yuan string with at most two decimals")
	errAmountRange  = errors.New("amount out of range [0.01, 100000000]")
	errAmountInt    = errors.New("amount must be an integer number of fen")
)

// parseYuan parses an Alipay amount ("12", "12.3", "12.30") exactly, without
// float64: digits, an optional point and one or two decimals. Signs,
// exponents, leading zeros ("012") and a bare point are refused.
func parseYuan(s string) (int64, error) {
	intPart, frac := s, ""
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			intPart, frac = s[:i], s[i+1:]
			if frac == "" {
				return 0, errAmountFormat
			}
			break
		}
	}
	if intPart == "" || len(frac) > 2 || (len(intPart) > 1 && intPart[0] == '0') || len(intPart) > 9 {
		if len(intPart) > 9 && allDigits(intPart) && len(frac) <= 2 {
			return 0, errAmountRange
		}
		return 0, errAmountFormat
	}
	if !allDigits(intPart) || !allDigits(frac) {
		return 0, errAmountFormat
	}
	yuan, _ := strconv.ParseInt(intPart, 10, 64) // ≤ 9 digits: cannot overflow
	var cents int64
	switch len(frac) {
	case 1:
		cents = int64(frac[0]-'0') * 10
	case 2:
		cents = int64(frac[0]-'0')*10 + int64(frac[1]-'0')
	}
	fen := yuan*100 + cents
	if fen < minFen || fen > maxFen {
		return 0, errAmountRange
	}
	return fen, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// formatYuan renders fen as Alipay does: always two decimals.
func formatYuan(fen int64) string {
	return fmt.Sprintf("%d.%02d", fen/100, fen%100)
}

// parseFen validates a WeChat amount: a JSON integer of fen in range.
// json.Number keeps the literal so 1.0 or 1e2 are told apart from 100.
func parseFen(n json.Number) (int64, error) {
	s := string(n)
	if s == "" || !allDigits(s) || (len(s) > 1 && s[0] == '0') {
		if len(s) > 1 && s[0] == '-' && allDigits(s[1:]) {
			return 0, errAmountRange
		}
		return 0, errAmountInt
	}
	if len(s) > 11 {
		return 0, errAmountRange
	}
	v, _ := strconv.ParseInt(s, 10, 64)
	if v < minFen || v > maxFen {
		return 0, errAmountRange
	}
	return v, nil
}
