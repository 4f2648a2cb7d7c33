package testcaddy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/caddyserver/caddy/v2"
)

// Validate runs caddy.Validate on a JSON config: every module is
// provisioned and validated, as `caddy validate` does, and nothing runs.
func Validate(t *testing.T, cfgJSON []byte) error {
	t.Helper()
	var cfg caddy.Config
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		t.Fatalf("%v\n%s", err, cfgJSON)
	}
	return caddy.Validate(&cfg)
}

// ValidateHandler is Validate of a config whose one route has one
// handler: name, with fields (JSON object members, without braces).
func ValidateHandler(t *testing.T, name, fields string) error {
	t.Helper()
	return Validate(t, []byte(`{"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[`+
		`{"handler":"`+name+`",`+fields+`}]}]}}}}}`))
}

// ValidateCaddyfile adapts a Caddyfile, failing the test if that fails,
// and validates the result.
func ValidateCaddyfile(t *testing.T, caddyfile string) error {
	t.Helper()
	adapted, _, err := Adapt(caddyfile)
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	return Validate(t, adapted)
}

// SnakeCase is the JSON name Caddy's modules give a Go field:
// FlushInterval → flush_interval, HMACSecret → hmac_secret, JWKSPath →
// jwks_path, AccessTTL → access_ttl.
func SnakeCase(field string) string {
	r := []rune(field)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) {
			prevLower := i > 0 && !unicode.IsUpper(r[i-1])
			endsAcronym := i > 0 && unicode.IsUpper(r[i-1]) && i+1 < len(r) && unicode.IsLower(r[i+1])
			if prevLower || endsAcronym {
				b.WriteByte('_')
			}
			c = unicode.ToLower(c)
		}
		b.WriteRune(c)
	}
	return b.String()
}

// CheckJSONNames fails the test for every exported field of the structs
// given (and of the structs of their package that they contain) whose JSON
// name is not SnakeCase of the field's name. Fields tagged "-" are skipped.
func CheckJSONNames(t *testing.T, values ...any) {
	t.Helper()
	seen := map[reflect.Type]bool{}
	for _, v := range values {
		typ := reflect.TypeOf(v)
		checkJSONNames(t, typ, typ.PkgPath(), seen)
	}
}

func checkJSONNames(t *testing.T, typ reflect.Type, pkg string, seen map[reflect.Type]bool) {
	t.Helper()
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
		typ = typ.Elem()
	}
	if typ.Kind() != reflect.Struct || typ.PkgPath() != pkg || seen[typ] {
		return
	}
	seen[typ] = true
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if want := SnakeCase(f.Name); name != want {
			t.Errorf("%s.%s is %q in JSON; Caddy's convention makes it %q: rename the field, or keep the old JSON name loading",
				typ.Name(), f.Name, name, want)
		}
		checkJSONNames(t, f.Type, pkg, seen)
	}
}

// CheckOldConfigsLoad proves that a module's JSON config stays a stable
// interface: dir holds a Caddyfile and adapted.json, what `tollgate adapt`
// made of that Caddyfile when it was recorded. Every handler of that
// module in adapted.json must still decode into the module (strictly, as
// Caddy decodes a config: an unknown field is an error), and adapting the
// Caddyfile today must give the same handlers.
func CheckOldConfigsLoad(t *testing.T, dir, moduleID string) {
	t.Helper()
	caddyfile, err := os.ReadFile(filepath.Join(dir, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	recorded, err := os.ReadFile(filepath.Join(dir, "adapted.json"))
	if err != nil {
		t.Fatal(err)
	}
	now, _, err := Adapt(string(caddyfile))
	if err != nil {
		t.Fatalf("adapt %s/Caddyfile: %v", dir, err)
	}
	name := moduleID[strings.LastIndex(moduleID, ".")+1:]
	old, current := Handlers(t, recorded, name), Handlers(t, now, name)
	if len(old) == 0 {
		t.Fatalf("no %s handler in %s/adapted.json", name, dir)
	}
	if !reflect.DeepEqual(old, current) {
		t.Errorf("adapting %s/Caddyfile today gives other JSON:\nrecorded %v\ntoday    %v", dir, old, current)
	}
	info, err := caddy.GetModule(moduleID)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range old {
		delete(h, "handler") // the inline module key, which Caddy removes before decoding
		raw, _ := json.Marshal(h)
		if err := caddy.StrictUnmarshalJSON(raw, info.New()); err != nil {
			t.Errorf("a config adapted before does not load any more: %v\n%s", err, raw)
		}
	}
}

// Handlers are the objects of adapted JSON whose "handler" is name, in an
// order of their own (servers are a JSON object).
func Handlers(t *testing.T, adapted []byte, name string) []map[string]any {
	t.Helper()
	var doc any
	if err := json.Unmarshal(adapted, &doc); err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["handler"] == name {
				out = append(out, x)
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(doc)
	// Servers are a JSON object: put the handlers in an order of their own.
	slices.SortFunc(out, func(a, b map[string]any) int {
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		return strings.Compare(string(ja), string(jb))
	})
	return out
}
