package beacon

import (
	"cmp"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/dsp/fourier"
)

// spectral is the periodicity test of BAYWATCH (Hu et al., "BAYWATCH:
// Robust Beaconing Detection to Identify Infected Hosts in Large-Scale
// Enterprise Networks", IEEE/IFIP DSN 2016, section IV-B), itself built
// on AUTOPERIOD (Vlachos, Yu and Castelli, "On Periodicity Detection and
// Structural Periodic Similarity", SDM 2005):
//
//  1. bin the connection times into a count series x of n bins of width w;
//  2. periodogram P(k) = |X(k)|^2 / n of the mean-removed series, k = 1..n/2
//     (gonum's real FFT);
//  3. significance by permutation: shuffle x, take the shuffled series'
//     largest periodogram value, repeat m times; a frequency is a candidate
//     when its power exceeds the largest of the m maxima (a test at level
//     1/(m+1): permuting destroys any order in time but keeps the counts);
//  4. confirm on the autocorrelation function (the inverse FFT of the
//     power spectrum of the zero-padded series): a candidate period is
//     accepted when the ACF has a hill (a local maximum) within the
//     periodogram bin's period range, and the period is refined to that
//     hill's lag. Harmonics of a narrow pulse train all exceed the
//     threshold; the one whose confirmed hill is highest is kept.
//
// The strength reported is in [0, 1]: 0 when no candidate is confirmed,
// else ramp(log(power / threshold), 0, log 3) (three times the largest of
// the permuted maxima is beyond doubt: their tails are exponential) times
// ramp(ACF at the hill, 0.05, 0.35) (the ACF normalised to ACF(0) = 1; a
// beacon half hidden among as many other connections keeps about 0.3), so
// that a significant but washed-out peak counts for less.
type spectral struct {
	ffts      [14]*fourier.FFT // by log2 of the length, built on first use
	fft, fft2 *fourier.FFT     // of the current series: n and 2n
	x, pad    []float64
	perm      []float64
	coef      []complex128
	power     []float64
	acf       []float64
	rng       *rand.Rand
	src       *rand.PCG
	perms     int
	cands     []cand
}

type cand struct {
	k int
	p float64
}

// maxCands bounds the ACF checks of one test.
const maxCands = 64

// spectralResult is the outcome of one test.
type spectralResult struct {
	strength float64
	period   float64 // seconds, 0 when none confirmed
	ratio    float64 // best candidate's power over the permutation threshold
	acf      float64 // ACF at the confirmed hill
}

// maxBins bounds the series, and so the cost of one FFT.
const maxBins = 2048

func newSpectral(perms int) *spectral {
	src := rand.NewPCG(1, 2)
	return &spectral{perms: perms, src: src, rng: rand.New(src)}
}

// test runs the test on sorted connection times (seconds), expecting a
// period near p0 seconds (the median gap), with a permutation stream
// seeded by seed so that results are reproducible per pair.
func (s *spectral) test(times []int64, p0 float64, seed uint64) spectralResult {
	if len(times) < 6 || p0 <= 0 {
		return spectralResult{}
	}
	span := float64(times[len(times)-1]-times[0]) + 1
	// Eight bins per expected period (a whole number of them, so that a
	// strict beacon lands in the same phase of every period) resolve
	// jitter well; the series is capped at maxBins by widening the bins.
	w := math.Max(1, p0/8)
	if span/w > maxBins {
		w = span / maxBins
	}
	n := int(math.Ceil(span / w))
	if n < 16 {
		return spectralResult{}
	}
	// A power of two keeps gonum's FFT on its fast path; the tail of the
	// last bin is zero-padded, which the mean removal treats as no
	// connections.
	n = nextPow2(n)
	s.ensure(n)
	x := s.x[:n]
	clear(x)
	for _, t := range times {
		x[int(float64(t-times[0])/w)]++
	}
	mean := float64(len(times)) / float64(n)
	for i := range x {
		x[i] -= mean
	}
	// Candidate periods: at least 2 bins (Nyquist) and at most a third of
	// the series (three cycles seen).
	kmin, kmax := 3, n/2
	s.periodogram(x, n)
	power := s.power[:n/2+1]

	best := 0.0
	for k := kmin; k <= kmax; k++ {
		best = math.Max(best, power[k])
	}
	// Permutation threshold. Once a shuffled series beats the observed
	// peak no frequency can pass, so most aperiodic pairs stop after a
	// permutation or two.
	s.src.Seed(seed, 0x9e3779b97f4a7c15)
	perm := s.perm[:n]
	copy(perm, x)
	thr := 0.0
	for range s.perms {
		s.rng.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		thr = math.Max(thr, s.maxPower(perm, n, kmin, kmax))
		if thr >= best {
			return spectralResult{ratio: best / thr}
		}
	}
	if thr <= 0 {
		return spectralResult{}
	}
	// Candidates: local maxima of the periodogram above the threshold.
	// A narrow pulse train puts as much power in its harmonics as in its
	// fundamental, so all of them are checked (the strongest maxCands):
	// only the fundamental's lag is a hill of the ACF.
	cands := s.cands[:0]
	for k := kmin; k <= kmax; k++ {
		p := power[k]
		if p <= thr || (k > kmin && power[k-1] > p) || (k < kmax && power[k+1] > p) {
			continue
		}
		cands = append(cands, cand{k, p})
	}
	s.cands = cands
	if len(cands) == 0 {
		return spectralResult{ratio: best / thr}
	}
	if len(cands) > maxCands {
		slices.SortFunc(cands, func(a, b cand) int { return cmp.Compare(b.p, a.p) })
		cands = cands[:maxCands]
	}
	acf := s.autocorrelation(x, n)
	var res spectralResult
	for _, c := range cands {
		// Periods (in bins) that periodogram bin k stands for:
		// n/(k+1) .. n/(k-1).
		lo := max(2, int(math.Floor(float64(n)/float64(c.k+1))))
		hi := min(n/2, int(math.Ceil(float64(n)/float64(c.k-1))))
		lag, v := hill(acf, lo, hi)
		if lag == 0 || v <= 0 {
			continue
		}
		st := ramp(math.Log(c.p/thr), 0, math.Log(3)) * ramp(v, 0.05, 0.35)
		if st > res.strength || (st == res.strength && res.period == 0) {
			res = spectralResult{strength: st, period: refine(acf, lag) * w, ratio: c.p / thr, acf: v}
		}
	}
	if res.period == 0 {
		res.ratio = best / thr
	}
	return res
}

// refine places the hill's top between lags by the parabola through the
// lag and its neighbours.
func refine(acf []float64, lag int) float64 {
	if lag < 1 || lag+1 >= len(acf) {
		return float64(lag)
	}
	a, b, c := acf[lag-1], acf[lag], acf[lag+1]
	if d := a - 2*b + c; d < 0 {
		return float64(lag) + 0.5*(a-c)/d
	}
	return float64(lag)
}

// hill returns the lag of the highest local maximum of acf within [lo,
// hi] that is not at the range's edge unless the ACF falls beyond it, and
// its value; 0 when there is none.
func hill(acf []float64, lo, hi int) (int, float64) {
	best, bv := 0, math.Inf(-1)
	for l := max(lo, 1); l <= hi && l+1 < len(acf); l++ {
		if acf[l] >= acf[l-1] && acf[l] >= acf[l+1] && acf[l] > bv {
			best, bv = l, acf[l]
		}
	}
	return best, bv
}

func (s *spectral) ensure(n int) {
	if cap(s.x) < n {
		s.x = make([]float64, n)
		s.perm = make([]float64, n)
		s.pad = make([]float64, 2*n)
		s.acf = make([]float64, 2*n)
		s.coef = make([]complex128, n+1)
		s.power = make([]float64, n/2+1)
	}
	s.fft, s.fft2 = s.plan(n), s.plan(2*n)
}

// plan returns the FFT of length n (a power of two up to 2 maxBins),
// reusing its twiddle factors across pairs.
func (s *spectral) plan(n int) *fourier.FFT {
	i := bits.TrailingZeros(uint(n))
	if s.ffts[i] == nil {
		s.ffts[i] = fourier.NewFFT(n)
	}
	return s.ffts[i]
}

// periodogram fills s.power with |X(k)|^2 / n.
func (s *spectral) periodogram(x []float64, n int) {
	coef := s.fft.Coefficients(s.coef[:n/2+1], x)
	for k, c := range coef {
		s.power[k] = (real(c)*real(c) + imag(c)*imag(c)) / float64(n)
	}
}

func (s *spectral) maxPower(x []float64, n, kmin, kmax int) float64 {
	coef := s.fft.Coefficients(s.coef[:n/2+1], x)
	m := 0.0
	for k := kmin; k <= kmax; k++ {
		c := coef[k]
		m = math.Max(m, real(c)*real(c)+imag(c)*imag(c))
	}
	return m / float64(n)
}

// autocorrelation returns the linear (not circular) autocorrelation of x,
// normalised so that lag 0 is 1, by Wiener-Khinchin on the series padded
// to 2n.
func (s *spectral) autocorrelation(x []float64, n int) []float64 {
	pad := s.pad[:2*n]
	copy(pad, x)
	clear(pad[n:])
	coef := s.fft2.Coefficients(s.coef[:n+1], pad)
	for k, c := range coef {
		coef[k] = complex(real(c)*real(c)+imag(c)*imag(c), 0)
	}
	acf := s.fft2.Sequence(s.acf[:2*n], coef)
	if acf[0] <= 0 {
		clear(acf)
		return acf[:n]
	}
	z := acf[0]
	for i := range acf[:n] {
		acf[i] /= z
	}
	return acf[:n]
}

func nextPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}
