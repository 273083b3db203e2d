package hunt_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ndr-go/ndr/internal/hunt"
	"github.com/ndr-go/ndr/internal/store"
)

const goodQuery = `-- name: sample
-- finds: Things that
--   continue here.
-- params:
--   from Nullable(DateTime64(6, 'UTC')) default NULL, start of the range
--   src IPv6 required, the host
--   nets Array(String) default ['10.0.0.0/8', '192.168.0.0/16'], internal networks, with a comma
--   window String default '10m0s', a window
--   limit UInt32 default 50, rows
--
-- More documentation, {not_a_param:String} included.
SELECT * FROM conn
WHERE ts >= {from:Nullable(DateTime64(6,'UTC'))} AND orig_h = {src:IPv6}
  AND arrayExists(n -> isIPAddressInRange(orig_ip, n), {nets:Array(String)}) AND {window:String} != ''
LIMIT {limit:UInt32}
`

func TestParse(t *testing.T) {
	q, err := hunt.Parse("sample", goodQuery)
	if err != nil {
		t.Fatal(err)
	}
	if q.Finds != "Things that continue here." {
		t.Errorf("finds %q", q.Finds)
	}
	want := []hunt.Param{
		{Name: "from", Type: "Nullable(DateTime64(6, 'UTC'))", Default: "NULL", Meaning: "start of the range"},
		{Name: "src", Type: "IPv6", Required: true, Meaning: "the host"},
		{Name: "nets", Type: "Array(String)", Default: "['10.0.0.0/8', '192.168.0.0/16']", Meaning: "internal networks, with a comma"},
		{Name: "window", Type: "String", Default: "'10m0s'", Meaning: "a window"},
		{Name: "limit", Type: "UInt32", Default: "50", Meaning: "rows"},
	}
	if len(q.Params) != len(want) {
		t.Fatalf("params %+v", q.Params)
	}
	for i := range want {
		if q.Params[i] != want[i] {
			t.Errorf("param %d: %+v, want %+v", i, q.Params[i], want[i])
		}
	}
}

func TestParseRejects(t *testing.T) {
	replace := func(old, new string) string { return strings.Replace(goodQuery, old, new, 1) }
	for _, tc := range []struct{ name, text, want string }{
		{"name differs", replace("-- name: sample", "-- name: other"), `name "other" differs`},
		{"no name", replace("-- name: sample\n", ""), "no '-- name:' line"},
		{"no finds", replace("-- finds: Things that\n--   continue here.\n", ""), "no '-- finds:' text"},
		{"unknown key", replace("-- params:", "-- parameters:"), `unknown key "parameters"`},
		{"undeclared placeholder", replace("LIMIT {limit:UInt32}", "LIMIT {limit:UInt32} OFFSET {skip:UInt32}"), "{skip:UInt32} is not declared"},
		{"unused parameter", replace("LIMIT {limit:UInt32}", "LIMIT 5"), "limit is declared but the query does not use it"},
		{"type drift", replace("orig_h = {src:IPv6}", "orig_h = {src:String}"), "has another type"},
		{"no default or required", replace("src IPv6 required,", "src IPv6,"), "want 'default VALUE' or 'required'"},
		{"no meaning", replace("limit UInt32 default 50, rows", "limit UInt32 default 50"), "want ', meaning'"},
		{"bad default", replace("limit UInt32 default 50,", "limit UInt32 default -1,"), "default -1"},
		{"NULL default not nullable", replace("limit UInt32 default 50,", "limit UInt32 default NULL,"), "not Nullable"},
		{"duplicate", replace("--   limit UInt32", "--   src IPv6 required, again\n--   limit UInt32"), "declared twice"},
		{"terminator", goodQuery + ";\n", "ends with ';'"},
		{"unbalanced type", replace("Array(String) default", "Array(String default"), "nets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := hunt.Parse("sample", tc.text)
			if err == nil {
				t.Fatal("parsed")
			}
			if !errors.Is(err, hunt.ErrBadHeader) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want ErrBadHeader with %q", err, tc.want)
			}
		})
	}
	if _, err := hunt.Parse("Bad_Name", goodQuery); !errors.Is(err, hunt.ErrBadHeader) {
		t.Errorf("bad file name: %v", err)
	}
}

func TestBind(t *testing.T) {
	q, err := hunt.Parse("sample", goodQuery)
	if err != nil {
		t.Fatal(err)
	}
	got, err := hunt.Bind(&q, map[string]string{"src": "10.0.0.5", "from": "2026-02-06T10:00:00.5+01:00"})
	if err != nil {
		t.Fatal(err)
	}
	want := store.Params{
		"from": "2026-02-06 09:00:00.500000", "src": "10.0.0.5", "nets": "['10.0.0.0/8', '192.168.0.0/16']",
		"window": "10m0s", "limit": "50",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("params %v, want %v", got, want)
	}
	got, err = hunt.Bind(&q, map[string]string{"src": "10.0.0.5"})
	if err != nil || got["from"] != `\N` {
		t.Errorf("default NULL: %q, %v", got["from"], err)
	}

	_, err = hunt.Bind(&q, map[string]string{"bogus": "1", "limit": "many"})
	for _, want := range []error{hunt.ErrUsage, hunt.ErrUnknownParam, hunt.ErrMissingParam, hunt.ErrBadValue} {
		if !errors.Is(err, want) {
			t.Errorf("error %v is not %v", err, want)
		}
	}
	for _, want := range []string{`"bogus"`, "missing parameter src", "bad parameter value for limit"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func TestEncode(t *testing.T) {
	f := func(typ, in, want string) {
		t.Helper()
		got, err := hunt.Param{Name: "p", Type: typ}.Encode(in)
		if err != nil {
			t.Errorf("%s %q: %v", typ, in, err)
		} else if got != want {
			t.Errorf("%s %q = %q, want %q", typ, in, got, want)
		}
	}
	bad := func(typ, in string) {
		t.Helper()
		if got, err := (hunt.Param{Name: "p", Type: typ}).Encode(in); err == nil {
			t.Errorf("%s %q = %q, want an error", typ, in, got)
		}
	}
	f("UInt8", "255", "255")
	bad("UInt8", "256")
	bad("UInt32", "-1")
	f("Int16", "-5", "-5")
	f("Float64", "3.5", "3.5")
	f("Float64", "-1e3", "-1000")
	bad("Float64", "lots")
	f("IPv6", "10.0.0.5", "10.0.0.5")
	f("IPv6", "::ffff:10.0.0.5", "10.0.0.5")
	f("IPv6", "2001:db8::1", "2001:db8::1")
	bad("IPv6", "10.0.0.0/8")
	bad("IPv4", "2001:db8::1")
	f("Nullable(IPv6)", "NULL", `\N`)
	f("Nullable(IPv6)", "null", `\N`)
	bad("IPv6", "NULL")
	f("DateTime64(6, 'UTC')", "2026-02-06T10:00:00Z", "2026-02-06 10:00:00.000000")
	f("DateTime64(6, 'UTC')", "2026-02-06 10:00:00.25", "2026-02-06 10:00:00.250000")
	f("DateTime64(6, 'UTC')", "2026-02-06", "2026-02-06 00:00:00.000000")
	f("DateTime", "1770372000", "2026-02-06 10:00:00.000000")
	bad("DateTime64(6)", "yesterday")
	f("Date", "2026-02-06T23:00:00Z", "2026-02-06")
	f("String", `a\b	c`, `a\\b\tc`)
	f("LowCardinality(String)", "x", "x")
	f("Array(String)", "['a']", "['a']")
	bad("Array(String)", "")
	f("Bool", "true", "true")
}
