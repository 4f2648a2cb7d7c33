package bill

import (
	"math/big"
	"testing"
)

func TestBillAmountsAreParsedExactlyOrRefused(t *testing.T) {
	good := []struct {
		in       string
		decimals int
		want     int64
	}{
		{"0.01", 2, 1}, {"12.30", 2, 1230}, {"12.3", 2, 1230}, {"12", 2, 1200}, {"0.00", 2, 0},
		{"-0.01", 2, -1}, {"-1000000.99", 2, -100000099}, {"999999999999.99", 2, 99999999999999},
		{"0.00000", 5, 0}, {"-0.05940", 5, -5940}, {"0.04", 5, 4000},
		{"0.29", 2, 29}, {"0.57", 2, 57}, {"1.15", 2, 115}, // float64 would round these wrong
	}
	for _, c := range good {
		got, err := ParseDecimal(c.in, c.decimals)
		if err != nil || got != c.want {
			t.Errorf("ParseDecimal(%q, %d) = %d, %v; want %d", c.in, c.decimals, got, err, c.want)
		}
	}
	for _, in := range []string{"", "-", ".5", "5.", "1.234", "+1.00", " 1.00", "1.00 ", "1e2", "1,000.00",
		"--1", "0x10", "1.2.3", "1234567890123.00", "１.00", "NaN", "-.5"} {
		if v, err := ParseYuan(in); err == nil {
			t.Errorf("ParseYuan(%q) = %d, want an error", in, v)
		}
	}
}

// FuzzParseDecimal checks every accepted amount against exact rational
// arithmetic.
func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"0.01", "-0.05940", "12", "999999999999.99999", "1."} {
		f.Add(s, 2)
		f.Add(s, 5)
	}
	f.Fuzz(func(t *testing.T, s string, decimals int) {
		if decimals < 0 || decimals > 5 {
			return
		}
		v, err := ParseDecimal(s, decimals)
		if err != nil {
			return
		}
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			t.Fatalf("accepted %q, which is not a number", s)
		}
		scale := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(decimals)), nil))
		r.Mul(r, scale)
		if !r.IsInt() || r.Num().Int64() != v {
			t.Fatalf("ParseDecimal(%q, %d) = %d, exact value %s", s, decimals, v, r.RatString())
		}
	})
}
