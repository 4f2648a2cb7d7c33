package alipay

import "testing"

func TestYuanRoundTripIsExact(t *testing.T) {
	for fen, want := range map[int64]string{0: "0.00", 1: "0.01", 10: "0.10", 1230: "12.30", 10000000000: "100000000.00", 29: "0.29"} {
		if got := FormatYuan(fen); got != want {
			t.Errorf("FormatYuan(%d) = %q, want %q", fen, got, want)
		}
		back, err := ParseYuan(want)
		if err != nil || back != fen {
			t.Errorf("ParseYuan(%q) = %d, %v; want %d", want, back, err, fen)
		}
	}
}

func TestParseYuanRejectsWhatItCannotRepresentExactly(t *testing.T) {
	for _, in := range []string{"", ".5", "1.", "1.234", "-1.00", "+1", "1e2", " 1.00", "1,00", "abc", "0.1.2", "9999999999999.00"} {
		if v, err := ParseYuan(in); err == nil {
			t.Errorf("ParseYuan(%q) = %d, want an error", in, v)
		}
	}
	if v, _ := ParseYuan("12.3"); v != 1230 {
		t.Errorf("ParseYuan(12.3) = %d", v)
	}
}
