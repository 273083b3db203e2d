package server

import (
	"strings"
	"testing"
)

// FuzzParseTokens: the tokens file parser never panics, and whatever it
// accepts authenticates nobody by a hash or an empty token, and maps each
// hash to one sensor.
func FuzzParseTokens(f *testing.F) {
	f.Add("zeek-a " + HashToken("t") + "\n# c\n\nzeek-b\t" + HashToken("u") + "\n")
	f.Add("zeek-a sha256:" + strings.Repeat("0", 64))
	f.Add("x y z\n\x00\xff")
	f.Fuzz(func(t *testing.T, in string) {
		set, err := ParseTokens(strings.NewReader(in), "fuzz")
		if err != nil {
			return
		}
		if _, ok := set.lookup(""); ok && !strings.Contains(in, HashToken("")) {
			t.Fatal("the empty token authenticates")
		}
		for _, e := range set.entries {
			if set.byHash[e.hash] != e.sensor || e.sensor == "" {
				t.Fatalf("entry %+v inconsistent", e)
			}
		}
	})
}
