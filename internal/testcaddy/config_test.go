package testcaddy

import "testing"

func TestSnakeCaseIsCaddysJSONName(t *testing.T) {
	for field, want := range map[string]string{
		"FlushInterval": "flush_interval", "HMACSecret": "hmac_secret", "JWKSPath": "jwks_path", "AccessTTL": "access_ttl",
		"URL": "url", "JWKS": "jwks", "RevocationAllowWithoutSid": "revocation_allow_without_sid", "Alg": "alg",
		"RequireRole": "require_role", "MaxSessions": "max_sessions",
	} {
		if got := SnakeCase(field); got != want {
			t.Errorf("SnakeCase(%q) = %q, want %q", field, got, want)
		}
	}
}
