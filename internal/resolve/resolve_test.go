package resolve

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValueExpandsEnvAndFileAndKeepsOtherBraces(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TG_PH_HOST", "10.0.0.5")
	for raw, want := range map[string]string{
		"plain":            "plain",
		"{env.TG_PH_HOST}": "10.0.0.5",
		"redis://:{file." + secretFile + "}@{env.TG_PH_HOST}:6379/0": "redis://:s3cret@10.0.0.5:6379/0",
		"abc{not-a-placeholder}def":                                  "abc{not-a-placeholder}def",
		"{unknown.thing}":                                            "{unknown.thing}",
	} {
		got, err := Value(raw)
		if err != nil || got != want {
			t.Errorf("Value(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
}

func TestEmptyPlaceholderIsNamedWithWhereToSetIt(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TG_PH_EMPTY", "")
	missing := filepath.Join(dir, "missing")
	for raw, want := range map[string]string{
		"{env.TG_PH_EMPTY}":                     "{env.TG_PH_EMPTY} is empty or unset: set it in the environment of the running tollgate server",
		"{env.TG_PH_NEVER_SET}/key.pem":         "{env.TG_PH_NEVER_SET} is empty or unset",
		"{file." + empty + "}":                  "{file." + empty + "} is empty",
		"redis://:{file." + missing + "}@h:1/0": "{file." + missing + "}: cannot read " + missing + ": no such file or directory",
	} {
		_, err := Value(raw)
		var ee *EmptyError
		if !errors.As(err, &ee) || !strings.Contains(err.Error(), want) {
			t.Errorf("Value(%q): %v, want an EmptyError containing %q", raw, err, want)
		}
	}
}

func TestErrorsNeverHoldAResolvedValue(t *testing.T) {
	t.Setenv("TG_PH_PASSWORD", "hunter2")
	_, err := Value("redis://:{env.TG_PH_PASSWORD}@{env.TG_PH_UNSET}:6379")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v: want one naming {env.TG_PH_UNSET} without the password", err)
	}
}

func TestOriginNamesThePlaceholderOnly(t *testing.T) {
	if o := Origin("/etc/k.pem"); o != "" {
		t.Errorf("Origin of a plain path = %q", o)
	}
	if o := Origin("{env.KEY_DIR}/k.pem"); o != " (from {env.KEY_DIR}/k.pem)" {
		t.Errorf("Origin = %q", o)
	}
}

// A key put where its file's path belongs ({env.X} holding the PEM, as a
// Kubernetes secret does) must never be quoted by an error about that
// "path": authjwt's key, jwt_refresh's signing_key and legacy_key and
// payproxy's provider keys all name a path through Where.
func TestWhereNeverQuotesAKeyGivenInPlaceOfItsPath(t *testing.T) {
	pem := "-----BEGIN PRIVATE KEY-----\nMIIEvgIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
	for _, tc := range []struct{ raw, resolved, want string }{
		{"/etc/k.pem", "/etc/k.pem", "/etc/k.pem"},
		{"{env.KEY_PATH}", "/etc/k.pem", "{env.KEY_PATH} (10 bytes once resolved)"},
		{"{env.KEY}", pem, "{env.KEY} (87 bytes once resolved)"},
		{"{file./run/secrets/k}", "MIIEvgIBADANBgkqhkiG9w0BAQEFAASC-----BEGIN", "{file./run/secrets/k} (42 bytes once resolved)"},
		{"{env.ALIPAY_PRIVATE_KEY}", "MIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSl", "{env.ALIPAY_PRIVATE_KEY} (40 bytes once resolved)"},
	} {
		got := Where(tc.raw, tc.resolved)
		if !strings.HasPrefix(got, tc.want) || strings.Contains(got, "MIIE") {
			t.Errorf("Where(%q, …) = %q, want %q and no key material", tc.raw, got, tc.want)
		}
	}
}
