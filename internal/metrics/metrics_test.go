package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// counted is the value of tollgate_test_events_total{kind="a"} as reg
// exports it (-1 when absent).
func counted(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "tollgate_test_events_total" && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return -1
}

// A config's handlers register the same process-wide collectors, and each
// reload's new registry gets them again with their counts; a second
// collector under the same name is a mistake and is refused.
func TestProcessWideCollectorsCarryTheirCountsIntoEveryRegistry(t *testing.T) {
	c := NewCounterVec("test", "events_total", "Events.", "kind")
	first := prometheus.NewPedanticRegistry()
	for range 2 { // two handlers of one config
		if err := Register(first, c); err != nil {
			t.Fatal(err)
		}
	}
	c.WithLabelValues("a").Add(3)
	reloaded := prometheus.NewPedanticRegistry()
	if err := Register(reloaded, c); err != nil {
		t.Fatal(err)
	}
	if v := counted(t, reloaded); v != 3 {
		t.Errorf("the new registry exports %v, want 3", v)
	}
	if err := Register(reloaded, NewCounterVec("test", "events_total", "Events.", "kind")); err == nil {
		t.Error("a second collector of the same name was accepted")
	}
	if err := Register(nil, c); err != nil {
		t.Errorf("nil registry: %v", err)
	}
}
