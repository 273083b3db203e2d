package upload

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/ndr-go/ndr/baseline"
)

// Expectation is a baseline's view of one host-hour of uploads: where the
// value falls in the host's model.
type Expectation struct {
	// Location and Scale of the model on the log1p scale; Expected is
	// expm1(Location), the typical active hour in bytes.
	Location, Scale, Expected float64
	// Z is (log1p(value) - Location)/Scale, the modified z-score.
	Z float64
	// TailProb is the model's probability of an hour at least this large
	// (1 at or below the model's floor).
	TailProb float64
	// Source names the model for people: "host v7", "prior v7" (the
	// snapshot's peer or population prior), or "static prior".
	Source string
	// Kind is Source for programs (KindHost, KindPrior, KindStaticPrior),
	// Version the snapshot's version (0 for the static prior).
	Kind    int
	Version uint64
}

// Baseline is what the scorer needs of a fitted baseline: the host's
// expectation for an hour of bytes sent to external destinations, and
// destination prevalence. Declared here, by the consumer; FromRegistry
// adapts the baseline package's Registry, and tests use a map.
type Baseline interface {
	// ExpectUpload rates value, the host's bytes to external
	// destinations in the hour ending at end (µs); ok is false when no
	// snapshot exists yet.
	ExpectUpload(host netip.Addr, end int64, value float64) (e Expectation, ok bool)
	// Prevalence is how many internal hosts contacted dst in the
	// baseline's window; ok is false for an unknown destination.
	Prevalence(dst netip.Addr) (hosts int, ok bool)
}

// FromRegistry adapts the current snapshot of reg (swapped atomically by
// retraining or the replay Learner) to Baseline.
func FromRegistry(reg *baseline.Registry) Baseline { return registryBaseline{reg} }

type registryBaseline struct{ reg *baseline.Registry }

func (b registryBaseline) ExpectUpload(host netip.Addr, end int64, value float64) (Expectation, bool) {
	s := b.reg.Current()
	if s == nil {
		return Expectation{}, false
	}
	m, own := s.HostModel(host)
	// The hour's hour of week is that of its middle.
	how := baseline.HourOfWeek(time.UnixMicro(end - 30*60e6))
	loc, scale := m.Expected(baseline.BytesOutExternal, how)
	kind, k := "host", KindHost
	if !own {
		kind, k = "prior", KindPrior
	}
	return Expectation{
		Location: loc, Scale: scale, Expected: math.Expm1(loc),
		Z:        m.Z(baseline.BytesOutExternal, how, value),
		TailProb: m.TailProb(baseline.BytesOutExternal, how, value),
		Source:   fmt.Sprintf("%s v%d", kind, s.Version()),
		Kind:     k, Version: s.Version(),
	}, true
}

func (b registryBaseline) Prevalence(dst netip.Addr) (int, bool) { return b.reg.Prevalence(dst) }
