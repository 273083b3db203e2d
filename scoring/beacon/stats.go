package beacon

import (
	"math"
	"slices"
)

// quantile is the type-7 sample quantile (linear interpolation between
// order statistics, R's and NumPy's default) of sorted data.
func quantile(sorted []float64, q float64) float64 {
	n := len(sorted)
	switch n {
	case 0:
		return math.NaN()
	case 1:
		return sorted[0]
	}
	h := q * float64(n-1)
	lo := int(h)
	if lo >= n-1 {
		return sorted[n-1]
	}
	return sorted[lo] + (h-float64(lo))*(sorted[lo+1]-sorted[lo])
}

// mad is the median absolute deviation from med (unscaled), using scratch
// for the deviations.
func mad(sorted []float64, med float64, scratch []float64) float64 {
	d := scratch[:0]
	for _, v := range sorted {
		d = append(d, math.Abs(v-med))
	}
	slices.Sort(d)
	return quantile(d, 0.5)
}

// bowley is Bowley's quartile skewness (Q1 + Q3 - 2 Q2) / (Q3 - Q1), in
// [-1, 1]; 0 when the quartiles coincide.
func bowley(q1, q2, q3 float64) float64 {
	if q3 <= q1 {
		return 0
	}
	return (q1 + q3 - 2*q2) / (q3 - q1)
}

func clamp01(x float64) float64 {
	switch {
	case x < 0 || math.IsNaN(x):
		return 0
	case x > 1:
		return 1
	}
	return x
}

// ramp maps x linearly from 0 at lo to 1 at hi (either orientation),
// clamped.
func ramp(x, lo, hi float64) float64 { return clamp01((x - lo) / (hi - lo)) }
