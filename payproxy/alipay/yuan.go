package alipay

import (
	"fmt"
	"strconv"
	"strings"
)

// Alipay spells money as yuan strings with at most two decimals. These two
// functions are the only place where fen become yuan and back: exact
// integer arithmetic, never float64.

// FormatYuan renders fen as "12.30".
func FormatYuan(fen int64) string {
	sign := ""
	if fen < 0 {
		sign, fen = "-", -fen
	}
	return fmt.Sprintf("%s%d.%02d", sign, fen/100, fen%100)
}

// ParseYuan parses "12.3", "12.30" or "12" into fen. More than two
// decimals, signs, exponents and spaces are errors, never rounded.
func ParseYuan(s string) (int64, error) {
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || !digits(whole) || (hasDot && (frac == "" || len(frac) > 2 || !digits(frac))) {
		return 0, fmt.Errorf("invalid yuan amount %q", s)
	}
	if len(whole) > 12 {
		return 0, fmt.Errorf("yuan amount %q out of range", s)
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid yuan amount %q: %w", s, err)
	}
	for len(frac) < 2 {
		frac += "0"
	}
	f, _ := strconv.ParseInt(frac, 10, 64)
	return w*100 + f, nil
}

func digits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
