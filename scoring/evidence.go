package scoring

import (
	"cmp"
	"math"
	"slices"
	"strconv"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/scoring/beacon"
	"github.com/ndr-go/ndr/scoring/upload"
)

// Layer 2's signal types: the scorers beside correlation (scoring/beacon,
// scoring/upload) emit them from the raw connections, and rules may
// require them like Layer 1's.
const (
	SignalBeaconScore    = beacon.SignalType
	SignalUploadAnomaly  = upload.SignalUpload
	SignalStagingAnomaly = upload.SignalStaging
	SignalMultiDstUpload = upload.SignalSpread
)

// MetricStrength is the metric by which a scorer rates its signal as
// evidence, in [0, 1]. Signals without it (Layer 1's threshold signals)
// are rated by their severity.
const MetricStrength = "evidence_strength"

// strength rates one signal as evidence in [0, 1].
func strength(s *features.Signal) float64 {
	if v, ok := s.Metric(MetricStrength); ok && !math.IsNaN(v) {
		return min(1, max(0, v))
	}
	return severityWeight(s.Severity)
}

// Deviation is one feature of one contributing signal measured against
// the baseline that judged it: what was seen, what the baseline expected,
// and how far apart they are.
type Deviation struct {
	Signal features.SignalType
	// Feature names the measured quantity, e.g. "bytes_out_external"
	// (per hour, to rare destinations) or "bytes_staged_in".
	Feature string
	// Baseline names the model: "host v7", "prior v7" (the snapshot's
	// peer or population prior), "static prior", "own history" or
	// "window baseline" (Layer 1's spike baselines).
	Baseline string
	// Observed and Expected are in the feature's unit; Ratio is
	// Observed/Expected (0 when Expected is 0).
	Observed, Expected, Ratio float64
	// Z is the deviation in the model's scale units (modified z on the
	// log scale for byte volumes), TailProb the model's probability of a
	// value at least as large (1 when the model does not say).
	Z, TailProb float64
}

// deviationOf reads a signal's deviation from its metrics, if it carries
// one: Layer 2's observed/expected/z/tail_prob metrics, or Layer 1's
// baseline_mean/baseline_sd against its Value.
func deviationOf(s *features.Signal) (Deviation, bool) {
	m := func(name string) float64 {
		v, _ := s.Metric(name)
		return finite(v)
	}
	d := Deviation{Signal: s.Type, TailProb: 1}
	if obs, ok := s.Metric("observed"); ok {
		d.Observed, d.Expected, d.Z = finite(obs), m("expected"), m("z")
		if p, ok := s.Metric("tail_prob"); ok {
			d.TailProb = finite(p)
		}
		switch int(m("baseline_kind")) {
		case upload.KindHost:
			d.Baseline = "host"
		case upload.KindPrior:
			d.Baseline = "prior"
		case upload.KindOwnHistory:
			d.Baseline = "own history"
		default:
			d.Baseline = "static prior"
		}
		if v := m("baseline_version"); v > 0 {
			d.Baseline += " v" + strconv.FormatUint(uint64(v), 10)
		}
		switch s.Type {
		case SignalUploadAnomaly:
			d.Feature = "bytes_out_external"
			if mode, _ := s.Metric("mode"); mode == upload.ModeSustained {
				d.Feature = "bytes_out_external_sustained"
			}
		case SignalStagingAnomaly:
			d.Feature = "bytes_staged_in"
		default:
			d.Feature = string(s.Type)
		}
	} else if mean, ok := s.Metric("baseline_mean"); ok {
		d.Feature, d.Baseline = string(s.Type), "window baseline"
		d.Observed, d.Expected = finite(s.Value), finite(mean)
		if sd := m("baseline_sd"); sd > 0 {
			d.Z = (d.Observed - d.Expected) / sd
		}
	} else {
		return Deviation{}, false
	}
	if d.Expected > 0 {
		d.Ratio = d.Observed / d.Expected
	}
	return d, true
}

// addDeviation keeps, per signal type and feature, the largest deviation.
func addDeviation(ds []Deviation, d Deviation) []Deviation {
	for i := range ds {
		if ds[i].Signal == d.Signal && ds[i].Feature == d.Feature {
			if d.Z > ds[i].Z {
				ds[i] = d
			}
			return ds
		}
	}
	if len(ds) >= maxSignals {
		return ds
	}
	ds = append(ds, d)
	slices.SortFunc(ds, func(a, b Deviation) int {
		if c := cmp.Compare(a.Signal, b.Signal); c != 0 {
			return c
		}
		return cmp.Compare(a.Feature, b.Feature)
	})
	return ds
}
