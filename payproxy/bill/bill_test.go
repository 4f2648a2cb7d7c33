package bill

import (
	"errors"
	"io"
	"testing"
)

// TestAStreamThatFailedNeverYieldsAnotherLine: after an error (or the
// end), Next repeats it, whatever the source would yield next.
func TestAStreamThatFailedNeverYieldsAnotherLine(t *testing.T) {
	bad := Bad("summary disagrees")
	for _, end := range []error{bad, io.EOF} {
		calls := 0
		s := Stream{Src: func() (Line, error) {
			calls++
			if calls == 2 {
				return Line{}, end
			}
			return Line{Kind: Payment, OrderNo: "A", AmountFen: 1}, nil
		}}
		if l, err := s.Next(); err != nil || l.OrderNo != "A" {
			t.Fatalf("first line: %+v %v", l, err)
		}
		for range 3 {
			if l, err := s.Next(); err != end || l != (Line{}) {
				t.Fatalf("after %v: %+v %v", end, l, err)
			}
		}
		if calls != 2 {
			t.Errorf("the source was asked again after %v", end)
		}
	}
	if !errors.Is(bad, ErrBadBill) || bad.Error() != "bad bill: summary disagrees" {
		t.Errorf("Bad: %v", bad)
	}
}

func TestHeadersMustNameEveryKnownColumnOnce(t *testing.T) {
	known := []string{"a", "b", "c"}
	if col, err := ColumnIndex([]string{"c", " a", "b\t"}, known, "x"); err != nil || col["a"] != 1 || col["b"] != 2 || col["c"] != 0 {
		t.Errorf("reordered header: %v %v", col, err)
	}
	for header, want := range map[string][]string{
		"x header: unknown column \"d\"":    {"a", "b", "c", "d"},
		"x header: missing column \"c\"":    {"a", "b"},
		"x header names column \"a\" twice": {"a", "a", "b", "c"},
	} {
		if _, err := ColumnIndex(want, known, "x"); !errors.Is(err, ErrBadBill) || err.Error() != "bad bill: "+header {
			t.Errorf("%v: %v", want, err)
		}
	}
}
