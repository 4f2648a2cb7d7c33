package bill

import "fmt"

// ParseYuan parses a bill's yuan amount ("12.30", "-0.01", "0") into fen,
// exactly, never through float64 — as payproxy/alipay's ParseYuan does for
// API amounts, plus the minus sign Alipay's bill puts on refund lines.
func ParseYuan(s string) (int64, error) { return ParseDecimal(s, 2) }

// ParseDecimal parses an optionally negative decimal with at most decimals
// fractional digits into an integer number of 10^-decimals units
// ("-0.05940", 5 → -5940: WeChat's 手续费). Plus signs, spaces, exponents,
// a bare point and more than 12 integer digits are errors, never rounded.
func ParseDecimal(s string, decimals int) (int64, error) {
	neg := len(s) > 0 && s[0] == '-'
	body := s
	if neg {
		body = s[1:]
	}
	var v int64
	i, whole := 0, 0
	for ; i < len(body) && body[i] >= '0' && body[i] <= '9'; i++ {
		v = v*10 + int64(body[i]-'0')
		whole++
	}
	if whole == 0 || whole > 12 {
		return 0, fmt.Errorf("invalid amount %q", s)
	}
	frac := 0
	if i < len(body) {
		if body[i] != '.' || i == len(body)-1 {
			return 0, fmt.Errorf("invalid amount %q", s)
		}
		for i++; i < len(body); i++ {
			if body[i] < '0' || body[i] > '9' || frac == decimals {
				return 0, fmt.Errorf("invalid amount %q", s)
			}
			v = v*10 + int64(body[i]-'0')
			frac++
		}
	}
	for ; frac < decimals; frac++ {
		v *= 10
	}
	if neg {
		v = -v
	}
	return v, nil
}
