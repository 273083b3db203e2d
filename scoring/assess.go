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
// severities, best per required type present (matched of required types).
//
// Severity is the rule's for a full match and one level lower for every
// missing required type (never below LOW): a partial match is reported,
// but quieter.
//
// Confidence is a product of three factors in [0, 1]:
//
//	conf = rule x coverage x (0.5 + 0.5 x mean severity weight)
//
// rule is the rule's own rating (HIGH 1, MEDIUM 0.85, LOW 0.7); coverage
// is matched/required, so that each missing signal costs its share; the
// last factor gives independent corroboration its due: three CRITICAL
// signals (weight 1) give 1, three LOW ones (0.25) give 0.625. With the
// reference's lateral-movement signals (MEDIUM, CRITICAL, CRITICAL) a full
// HIGH rule gives 0.917.
//
// Score ranks detections for triage on 0-100: severity weight times
// confidence, so that a CRITICAL detection at 0.9 scores 90 and a partial
// HIGH one at 0.6 scores 45.
func assess(r *Rule, best map[features.SignalType]features.Severity) assessment {
	required := len(r.RequiredSignals)
	matched := 0
	var sum float64
	for _, t := range r.RequiredSignals {
		if s, ok := best[t]; ok {
			matched++
			sum += severityWeight(s)
		}
	}
	if matched == 0 || required == 0 {
		return assessment{}
	}
	sev := int(r.Severity) - (required - matched)
	sev = max(sev, int(features.Low))
	ruleF, _ := ruleConfidence(r.Confidence)
	coverage := float64(matched) / float64(required)
	conf := ruleF * coverage * (0.5 + 0.5*sum/float64(matched))
	conf = math.Min(1, math.Max(0, conf))
	return assessment{severity: features.Severity(sev), confidence: conf, score: score(features.Severity(sev), conf)}
}

// score is severity weight times confidence on 0-100; see assess.
func score(sev features.Severity, conf float64) int {
	return int(math.Round(100 * severityWeight(sev) * round3(conf)))
}
