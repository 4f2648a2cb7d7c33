// Package deploy_test checks what deploy/ ships: the alert rules with
// promtool, the Grafana dashboard's queries, and both against a real
// Prometheus scraping a real tollgate.
package deploy_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const (
	rulesFile     = "prometheus/alerts.yml"
	rulesTestFile = "prometheus/alerts_test.yml"
	dashboardFile = "grafana/tollgate.json"
)

// tool finds a command of Debian's prometheus package; the tests fail (never
// skip) without it, as they do without redis-server.
func tool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is required for deploy/'s tests (apt-get install -y prometheus; `make test` does it): %v", name, err)
	}
	return path
}

func TestAlertRulesPassPromtoolCheckAndUnitTests(t *testing.T) {
	promtool := tool(t, "promtool")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestEveryAlertHasAUnitTestWhereItFiresAndOneWhereItDoesNot reads the two
// files as text: each alert of alerts.yml needs an eval with expected alerts
// and an eval with none in alerts_test.yml.
func TestEveryAlertHasAUnitTestWhereItFiresAndOneWhereItDoesNot(t *testing.T) {
	alerts := alertNames(t)
	if len(alerts) < 8 {
		t.Fatalf("found %d alerts in %s: %v", len(alerts), rulesFile, alerts)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	evalRe := regexp.MustCompile(`(?s)alertname:\s*(\S+)\s*\n\s*exp_alerts:\s*(\[\])?`)
	for _, m := range evalRe.FindAllStringSubmatch(readFile(t, rulesTestFile), -1) {
		if m[2] == "[]" {
			quiet[m[1]] = true
		} else {
			fires[m[1]] = true
		}
	}
	for _, a := range alerts {
		if !fires[a] || !quiet[a] {
			t.Errorf("alert %s: a unit test where it fires: %v, where it does not: %v", a, fires[a], quiet[a])
		}
	}
}

// TestDashboardShowsEveryDocumentedAndAlertedMetric: every tollgate metric
// named in the project's Markdown files or used by an alert has a panel.
func TestDashboardShowsEveryDocumentedAndAlertedMetric(t *testing.T) {
	exprs := strings.Join(dashboardExprs(t), "\n")
	names := metricNames(readFile(t, rulesFile))
	mds, err := filepath.Glob("../*.md")
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("../*/*.md")
	for _, md := range append(mds, more...) {
		names = append(names, metricNames(readFile(t, md))...)
	}
	if !slices.Contains(names, "tollgate_payproxy_webhook_dead_letters") || !slices.Contains(names, "tollgate_refresh_outcomes_total") {
		t.Fatalf("metric names not found where expected: %v", names)
	}
	for _, name := range names {
		if !strings.Contains(exprs, name) {
			t.Errorf("%s has no panel in %s", name, dashboardFile)
		}
	}
}

// TestDashboardQueriesUseOnlyItsOwnVariables: a query whose variable
// Grafana does not define would fail there and pass here.
func TestDashboardQueriesUseOnlyItsOwnVariables(t *testing.T) {
	for _, expr := range dashboardExprs(t) {
		if q := promQL(expr); strings.Contains(q, "$") {
			t.Errorf("undefined variable in %q", expr)
		}
	}
}

// alertNames are the alerts of alerts.yml.
func alertNames(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^\s*- alert:\s*(\S+)`).FindAllStringSubmatch(readFile(t, rulesFile), -1) {
		names = append(names, m[1])
	}
	return names
}

// metricNames finds tollgate's metric names in text, without the suffixes
// of a histogram's series.
func metricNames(text string) []string {
	var out []string
	for _, n := range regexp.MustCompile(`tollgate_(?:authjwt|refresh|payproxy)_[a-z_]*[a-z]`).FindAllString(text, -1) {
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			n = strings.TrimSuffix(n, suffix)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// dashboardPanel is the part of a Grafana panel the tests read; rows nest
// their panels when collapsed.
type dashboardPanel struct {
	Title   string           `json:"title"`
	Type    string           `json:"type"`
	Panels  []dashboardPanel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// dashboardExprs returns every query of every panel of the dashboard.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	var dash struct {
		Panels     []dashboardPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name string `json:"name"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal([]byte(readFile(t, dashboardFile)), &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var exprs []string
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	if len(exprs) < 20 {
		t.Fatalf("%s has %d queries", dashboardFile, len(exprs))
	}
	return exprs
}

// promQL turns a dashboard query into what Grafana sends Prometheus, with
// the dashboard's variables at their "All" values.
func promQL(expr string) string {
	return strings.NewReplacer("$__rate_interval", "1m", "${job}", ".+", "$job", ".+").Replace(expr)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
