package quality

import (
	"context"
	"testing"

	"github.com/ndr-go/ndr/ingest/scenario"
)

// TestTargets runs the pipeline over a small seeded benchmark corpus
// (every attack instance of the full one, a smaller haystack) and asserts
// issue 4's targets: beacon recall >= 0.95, exfiltration and lateral
// recall 1, no detection on backups, admin sessions or cloud uploads, and
// at most one false positive per 1,000 hosts per day, which on a corpus
// this small means none. `ndr quality` measures the full corpus.
func TestTargets(t *testing.T) {
	if testing.Short() {
		t.Skip("analyses a benchmark corpus")
	}
	o := Options{Corpus: scenario.DefaultBenchmarkOptions()}
	o.Corpus.Hosts, o.Corpus.Days = 150, 2
	o.C2Every = 4
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Check(); err != nil {
		var buf writer
		rep.Write(&buf)
		t.Fatalf("%v\n%s", err, buf)
	}
	if rep.FP != 0 {
		t.Errorf("%d false positives on %d hosts x %d days: %v", rep.FP, rep.Hosts, rep.Days, rep.FalsePositives)
	}
	for _, u := range rep.UseCases {
		if u.Instances == 0 {
			t.Errorf("%s: no instances in the corpus", u.Name)
		}
	}
	// The comparison row is measured on the same pairs.
	if rep.RITAPositivePairs != rep.PositivePairs || len(rep.RITA) != len(rep.ROC) {
		t.Errorf("RITA row over %d C2 pairs, ndr's over %d", rep.RITAPositivePairs, rep.PositivePairs)
	}
	if rep.BeaconBytesPerPair <= 0 || rep.BeaconBytesPerPair > 400 {
		t.Errorf("beacon tracker: %.0f bytes per pair", rep.BeaconBytesPerPair)
	}
}

type writer []byte

func (w *writer) Write(p []byte) (int, error) { *w = append(*w, p...); return len(p), nil }
func (w writer) String() string               { return string(w) }
