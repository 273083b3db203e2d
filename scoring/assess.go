package scoring

import (
	"math"

	"github.com/ndr-go/ndr/features"
)

// assessment is how bad and how sure a detection is. It is computed in
// this one place so that the evidence-weighted scoring planned for a later
// issue replaces one function.
type assessment struct {
	severity   features.Severity
	confidence float64
	score      int
}

// severityWeight maps a severity onto (0, 1].
func severityWeight(s features.Severity) float64 {
	switch s {
	case features.Critical:
		return 1
	case features.High:
		return 0.75
	case features.Medium:
		return 0.5
	case features.Low:
		return 0.25
	}
	return 0
}

// assess rates a match of rule r whose contributing signals have the given
// best severities and evidence strengths per required type present (str
// nil: each type's strength is its severity weight).
//
// Confidence is a product of three factors in [0, 1]:
//
//	conf = rule x coverage x (0.5 + 0.5 x mean strength)
//
// rule is the rule's own rating (HIGH 1, MEDIUM 0.85, LOW 0.7); coverage
// is matched/required, so that each missing signal costs its share; the
// last factor is the combined evidence. A signal's strength is its
// scorer's evidence_strength metric (a beacon score, a tail probability,
// a CUSUM: see strength), and for Layer 1's threshold signals their
// severity weight: three CRITICAL signals (weight 1) give 1, three LOW
// ones (0.25) give 0.625. With the reference's lateral-movement signals
// (MEDIUM, CRITICAL, CRITICAL) a full HIGH rule gives 0.917.
//
// Severity follows from confidence: at most CRITICAL from 0.85, HIGH from
// 0.7, MEDIUM from 0.5, else LOW; and never above the rule's severity
// lowered one level for every missing required type (never below LOW),
// so a partial match is reported, but quieter.
//
// Score ranks detections for triage on 0-100: severity weight times
// confidence, so that a CRITICAL detection at 0.9 scores 90 and a partial
// HIGH one at 0.6 scores 45.
func assess(r *Rule, best map[features.SignalType]features.Severity, str map[features.SignalType]float64) assessment {
	required := len(r.RequiredSignals)
	matched := 0
	var sum float64
	for _, t := range r.RequiredSignals {
		if s, ok := best[t]; ok {
			matched++
			if v, ok := str[t]; ok {
				sum += v
			} else {
				sum += severityWeight(s)
			}
		}
	}
	if matched == 0 || required == 0 {
		return assessment{}
	}
	ruleF, _ := ruleConfidence(r.Confidence)
	coverage := float64(matched) / float64(required)
	conf := ruleF * coverage * (0.5 + 0.5*sum/float64(matched))
	conf = math.Min(1, math.Max(0, conf))
	sev := int(r.Severity) - (required - matched)
	sev = max(min(sev, int(severityFor(conf))), int(features.Low))
	return assessment{severity: features.Severity(sev), confidence: conf, score: score(features.Severity(sev), conf)}
}

// severityFor is the highest severity a confidence supports; see assess.
func severityFor(conf float64) features.Severity {
	switch {
	case conf >= 0.85:
		return features.Critical
	case conf >= 0.7:
		return features.High
	case conf >= 0.5:
		return features.Medium
	}
	return features.Low
}

// score is severity weight times confidence on 0-100; see assess.
func score(sev features.Severity, conf float64) int {
	return int(math.Round(100 * severityWeight(sev) * round3(conf)))
}
