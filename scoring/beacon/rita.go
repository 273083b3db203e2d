package beacon

import (
	"math"
	"slices"
)

// RITAResult is RITA v5's beacon score of one pair and its four parts.
type RITAResult struct {
	Score, Timestamp, DataSize, Histogram, Duration float64
	// OK is false when RITA would not score the pair (fewer than 4
	// timestamps or 3 non-zero intervals).
	OK bool
}

// RITA computes the beacon score RITA v5 publishes (activecm/rita,
// analysis/beacons.go, default configuration), as the comparison row of
// the quality benchmark. It is not used for detection.
//
// ts are the pair's connection start times in whole seconds (all of
// them, repeats included) and bytes their orig_ip_bytes, both within the
// dataset range [dsMin, dsMax] (RITA: the last 24 hours of the dataset).
//
//	timestamp = ((1 - |Bowley|) + (median - MAD)/median) / 2 over the
//	            non-zero gaps between sorted timestamps; Bowley is 0 when
//	            Q3 - Q1 < 10 or the median equals a quartile
//	data size = the same over bytes (MAD part 0 when the median is < 1)
//	histogram = max(1 - CV of 24 hourly connection counts,
//	                bimodal fit: share of non-empty hours whose count falls
//	                in the two most common height bins of width 5 % of the
//	                tallest, one outlier removed, with >= 11 hours)
//	duration  = max((last - first)/(dsMax - dsMin), longest run of busy
//	            hours (wrapping) / 12), when >= 6 hours are busy
//	score     = 0.25 each
func RITA(ts []int64, bytes []float64, dsMin, dsMax int64) RITAResult {
	if len(ts) < 4 || dsMax <= dsMin {
		return RITAResult{}
	}
	sorted := slices.Clone(ts)
	slices.Sort(sorted)
	var gaps []float64
	for i := 1; i < len(sorted); i++ {
		if d := sorted[i] - sorted[i-1]; d > 0 {
			gaps = append(gaps, float64(d))
		}
	}
	if len(gaps) < 3 || len(bytes) < 3 {
		return RITAResult{}
	}
	slices.Sort(gaps)
	var r RITAResult
	r.Timestamp = ritaStat(gaps, 1)
	b := slices.Clone(bytes)
	slices.Sort(b)
	r.DataSize = ritaStat(b, 0)

	// Histogram of 24 equal bins over the dataset range.
	var hist [24]int
	step := float64(dsMax-dsMin) / 24
	for _, t := range sorted {
		i := int(float64(t-dsMin) / step)
		hist[min(max(i, 0), 23)]++
	}
	total, bars, largest := 0, 0, 0
	for _, c := range hist {
		total += c
		if c > 0 {
			bars++
		}
		largest = max(largest, c)
	}
	mean := float64(total) / 24
	var ss float64
	for _, c := range hist {
		ss += (float64(c) - mean) * (float64(c) - mean)
	}
	cv := math.Sqrt(ss/24) / mean
	cvScore := 0.0
	if cv <= 1 {
		cvScore = round3(1 - cv)
	}
	bin := math.Ceil(float64(largest) * 0.05)
	freq := map[int]int{}
	run, longest := 0, 0
	for i := range 48 {
		c := hist[i%24]
		if c > 0 {
			run++
		} else {
			longest, run = max(longest, run), 0
		}
		if i < 24 && c > 0 {
			freq[int(math.Floor(float64(c)/bin)*bin)]++
		}
	}
	longest = min(max(longest, run), 24)
	bimodal := 0.0
	if bars >= 11 {
		first, second := 0, 0
		for _, v := range freq {
			if v > first {
				first, second = v, first
			} else if v > second {
				second = v
			}
		}
		bimodal = math.Min(1, round3(float64(first+second)/math.Max(float64(bars-1), 1)))
	}
	r.Histogram = math.Max(cvScore, bimodal)
	if bars >= 6 && sorted[len(sorted)-1] > sorted[0] {
		coverage := math.Min(1, math.Ceil(float64(sorted[len(sorted)-1]-sorted[0])/float64(dsMax-dsMin)*1000)/1000)
		consistency := math.Min(1, math.Ceil(float64(longest)/12*1000)/1000)
		r.Duration = math.Max(coverage, consistency)
	}
	r.Score = round3(0.25 * (r.Timestamp + r.DataSize + r.Histogram + r.Duration))
	r.OK = true
	return r
}

// ritaStat is RITA's calculateStatisticalScore on sorted values: the mean
// of the Bowley skewness score and the MAD score.
func ritaStat(sorted []float64, defaultMAD float64) float64 {
	q1, q2, q3 := tukeyQuartiles(sorted)
	skew := 0.0
	if q3-q1 >= 10 && q2 != q1 && q2 != q3 {
		skew = (q1 + q3 - 2*q2) / (q3 - q1)
	}
	med := quantile(sorted, 0.5)
	m := mad(sorted, med, make([]float64, 0, len(sorted)))
	madScore := defaultMAD
	if med >= 1 {
		madScore = (med - m) / med
	}
	if madScore < 0 || math.IsNaN(madScore) {
		madScore = 0
	}
	return round3((1 - math.Abs(skew) + madScore) / 2)
}

// tukeyQuartiles are the quartiles of montanaflynn/stats.Quartile, which
// RITA uses: the medians of the lower and upper halves, the middle value
// excluded when the count is odd.
func tukeyQuartiles(sorted []float64) (q1, q2, q3 float64) {
	n := len(sorted)
	q2 = quantile(sorted, 0.5)
	half := n / 2
	if n%2 == 0 {
		return quantile(sorted[:half], 0.5), q2, quantile(sorted[half:], 0.5)
	}
	return quantile(sorted[:half], 0.5), q2, quantile(sorted[half+1:], 0.5)
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
