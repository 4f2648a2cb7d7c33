// Package resolve resolves the `{env.*}` and `{file.*}` placeholders of
// configuration values that may hold a secret or name one — key paths,
// secrets, Redis URLs and passwords, URLs that may carry credentials — the
// same way in every tollgate module, when the config is provisioned (never
// while a Caddyfile is parsed).
//
// Expansion is Caddy's own (a replacer's ReplaceKnown: braces that are not
// a known placeholder are kept, so a secret that merely contains braces is
// never blanked). What this package adds is the diagnosis: `{env.*}` and
// `{file.*}` are read from the running server, not from the shell that runs
// `tollgate reload`, so an empty or unreadable one is the usual mistake
// after a reload, and the error names the placeholder it came from instead
// of reporting an empty value further down ("must be 32 bytes, got 0").
package resolve

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// WhereToSet tells an operator where `{env.*}` variables must be set; every
// empty-variable error ends with it.
const WhereToSet = "set it in the environment of the running tollgate server (systemd EnvironmentFile=, " +
	"the container's environment): `tollgate reload` does not pass its own shell's variables on"

// refs finds the {env.NAME} and {file.PATH} placeholders of a value.
var refs = regexp.MustCompile(`\{(env|file)\.([^{}]+)\}`)

// EmptyError says which placeholder made a value empty or unreadable.
type EmptyError struct {
	// Placeholder is the placeholder as written, e.g. {env.JWT_KEY_FILE}.
	Placeholder string
	// Cause is why a {file.*} could not be read (nil when it was empty).
	Cause error
}

func (e *EmptyError) Error() string {
	switch {
	case e.Cause != nil:
		return fmt.Sprintf("%s: %v", e.Placeholder, e.Cause)
	case strings.HasPrefix(e.Placeholder, "{env."):
		return fmt.Sprintf("%s is empty or unset: %s", e.Placeholder, WhereToSet)
	}
	return fmt.Sprintf("%s is empty", e.Placeholder)
}

func (e *EmptyError) Unwrap() error { return e.Cause }

// Value expands the placeholders of raw. A `{env.*}` that is unset or
// empty, or a `{file.*}` that cannot be read or is empty, is an
// *EmptyError naming it: nobody writes a placeholder meaning "nothing".
// Values without placeholders come back unchanged. The error never
// contains a resolved value, so it is safe for secrets.
func Value(raw string) (string, error) {
	if !strings.Contains(raw, "{") {
		return raw, nil
	}
	for _, m := range refs.FindAllStringSubmatch(raw, -1) {
		if err := check(m[0], m[1], m[2]); err != nil {
			return "", err
		}
	}
	return caddy.NewReplacer().ReplaceKnown(raw, ""), nil
}

// Values resolves each value, stopping at the first error.
func Values(raws []string) ([]string, error) {
	out := make([]string, len(raws))
	for i, raw := range raws {
		v, err := Value(raw)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// check reports whether one placeholder would expand to something.
func check(whole, kind, name string) error {
	if kind == "env" {
		if os.Getenv(name) == "" {
			return &EmptyError{Placeholder: whole}
		}
		return nil
	}
	// Read it as Caddy will (a final newline does not count), so the cause
	// of a failure is ours to report with the placeholder.
	b, err := os.ReadFile(name)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the placeholder already
		}
		return &EmptyError{Placeholder: whole, Cause: fmt.Errorf("cannot read %s: %w", name, err)}
	}
	if strings.TrimRight(string(b), "\r\n") == "" {
		return &EmptyError{Placeholder: whole}
	}
	return nil
}

// Origin is " (from <raw>)" when raw holds placeholders, else "": errors
// about a resolved path or URL append it so the operator sees both what was
// used and where it came from. Never use it with a raw value that is itself
// a secret.
func Origin(raw string) string {
	if !refs.MatchString(raw) {
		return ""
	}
	return " (from " + raw + ")"
}

// Where names a resolved file path in an error: the path itself when it
// was written out, or — when raw holds placeholders — only the placeholders
// and the size of what they gave, never what they gave: ops put keys
// themselves where a path belongs (a PEM block, or the one base64 line
// Alipay's console hands out), and the error is logged and answered by the
// admin API's /load.
func Where(raw, resolved string) string {
	if !Has(raw) {
		return resolved
	}
	return fmt.Sprintf("%s (%d bytes once resolved)", raw, len(resolved))
}

// Has reports whether raw holds an {env.*} or {file.*} placeholder, i.e.
// whether it can only be checked once resolved.
func Has(raw string) bool { return refs.MatchString(raw) }
