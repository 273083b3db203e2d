package features

import (
	"fmt"
	"math"
	"math/bits"
	"net/netip"
	"slices"
)

// Baselines gives per-host models to the spike signals. The ML team's
// baseline package implements it; nil means priors only. Lookup must be
// cheap (it is called for every host row of a spike window) and safe to
// call from the engine's goroutine while snapshots are swapped.
type Baselines interface {
	// Lookup returns the host's mean and standard deviation of metric for
	// a window ending at (µs since the epoch); ok is false when the host
	// has no usable baseline yet.
	Lookup(host netip.Addr, metric string, at int64) (mean, sd float64, ok bool)
}

// Baseline metric names: the quantity per window of the signal's window.
const (
	// BaselineConnections: connections per CONNECTION_SPIKE window.
	BaselineConnections = "connections"
	// BaselineBytesOutExternal: orig bytes to external destinations per
	// OUTBOUND_SPIKE window.
	BaselineBytesOutExternal = "bytes_out_external"
)

// Value and Threshold of each signal (Signal.Value, Signal.Threshold), and
// the quantity its bands apply to:
//
//	PORT_SCAN               distinct ports            > distinct_ports_over      bands: distinct ports
//	CONNECTION_SPIKE        z                         > z_over                   bands: z
//	PRIVILEGED_ACCESS       privileged ports (or hosts when only the host condition holds)
//	                                                  >= min_ports (min_hosts)   bands: distinct services
//	HOST_SWEEP              hosts on the busiest port >= min_hosts_one_port      bands: same
//	FAILED_CONNECTIONS      failed ratio              >= min_ratio               bands: failed count
//	PERIODIC_BEACON         gap CV                    < cv_below                 bands: connections
//	PERSISTENT_DESTINATION  connections               >= min_connections         bands: internal hosts (descending)
//	COMMAND_EXCHANGE        response/request ratio    > total_ratio_over         bands: exchanges
//	DATA_STAGING            staged bytes              > total_bytes_over         bands: same
//	OUTBOUND_SPIKE          bytes out external        > min(bytes_over, mean + z_over*sd)
//	                                                                             bands: z; absolute_severity over bytes_over
//	DESTINATION_DIVERSITY   large external destinations >= min_destinations     bands: same

// hostSpec is one enabled host signal: its window shape and hop, and the
// class (the specs of its hop) it belongs to.
type hostSpec struct {
	typ   SignalType
	shape int
	size  int64
	hop   int64
	class int
}

type pairSpec struct {
	typ   SignalType
	shape int // len(pairShapes) for sessions
	size  int64
	hop   int64
	class int // -1 for sessions
}

// needsDistinct: the signal reads distinct counts (or lists) from the
// host's sets.
func (t SignalType) needsDistinct() bool {
	switch t {
	case PortScan, ConnectionSpike, PrivilegedAccess, HostSweep, DestinationDiversity:
		return true
	}
	return false
}

// spikeEval is a spike signal's score for one window, computed once per
// visit for the gate, the signal and the row.
type spikeEval struct {
	z, mean, sd float64
	base        uint8
}

// suppression state: the last emitted signal of a type for one entity.
type suppKey struct {
	typ      SignalType
	src, dst netip.Addr
	port     uint16
}

type suppState struct {
	end      int64
	sev      Severity
	strength float64
}

const (
	maxDetailPorts = 64
	maxDetailDsts  = 16
)

// spike scores the spike spec i on the window summed in a (the baseline
// lookup happens here, once per window).
func (e *Engine) spike(i int, a *hostAgg, host addrKey, T int64) spikeEval {
	cfg := &e.cfg.Signals
	switch e.hostSpecs[i].typ {
	case ConnectionSpike:
		c := &cfg.ConnectionSpike
		mean, sd, base := e.baseline(host, BaselineConnections, T, c.PriorMean, c.PriorSD)
		// z against the host baseline or the prior (the reference:
		// (40 - 10) / 3 = 10.0 for its sample).
		return spikeEval{(float64(a.conns) - mean) / sd, mean, sd, base}
	case OutboundSpike:
		c := &cfg.OutboundSpike
		mean, sd, base := e.baseline(host, BaselineBytesOutExternal, T, c.PriorMeanBytes, c.PriorSDBytes)
		// The reference's deviation score is z in MB:
		// (bytes/10^6 - 50) / 25, i.e. (bytes - mean) / sd in bytes.
		// Its sample's 2.2 GB gives 86.0 over the whole file; the real
		// 5-minute window [10:20, 10:25) holds 2.05 GB, z 80.
		return spikeEval{(float64(a.bytesOutExt) - mean) / sd, mean, sd, base}
	}
	return spikeEval{}
}

// hostSignals evaluates the host signals in specs (indices into
// hostSpecs) on r's window, fills r's z columns from the spike scores in
// e.spikes, and appends the signals that fire; it returns the specs that
// fired. Evidence lists are built only for signals that are not
// suppressed.
func (e *Engine) hostSignals(r *hostRow, T int64, specs uint16) (fired uint16) {
	cfg := &e.cfg.Signals
	tp := e.hostIdx(T)
	for i := range e.hostSpecs {
		sp := e.hostSpecs[i]
		if sp.shape != r.shape || specs&(1<<uint(i)) == 0 {
			continue
		}
		panes := sp.size / e.g.hostPane
		switch sp.typ {
		case PortScan:
			c := &cfg.PortScan
			v := float64(r.ports)
			if r.ports <= uint32(c.DistinctPortsOver) {
				continue
			}
			fired |= 1 << uint(i)
			s := e.hostSignal(r, PortScan, v, float64(c.DistinctPortsOver), c.Bands.severity(v, false))
			if !e.admit(&s, sp.size, sp.hop, v) {
				continue
			}
			s.Metrics = e.metrics(Metric{"unique_ports", v}, Metric{"connection_count", float64(r.conns)},
				Metric{"unique_hosts", float64(r.ihosts + r.xhosts)})
			det := e.hostDetail(r.hostIdx, tagPort, -1, tp, panes, maxDetailPorts)
			s.Ports = make([]uint16, len(det))
			for i, el := range det {
				s.Ports[i] = elemPort(el)
			}
			e.signals = append(e.signals, s)
		case ConnectionSpike:
			c := &cfg.ConnectionSpike
			sk := &e.spikes[i]
			z := sk.z
			r.connZ, r.connZOK, r.connBase = z, true, sk.base
			if !(z > c.ZOver) {
				continue
			}
			fired |= 1 << uint(i)
			s := e.hostSignal(r, ConnectionSpike, z, c.ZOver, c.Bands.severity(z, false))
			if !e.admit(&s, sp.size, sp.hop, z) {
				continue
			}
			s.Metrics = e.metrics(Metric{"connection_count", float64(r.conns)}, Metric{"deviation_score", z},
				Metric{"baseline_mean", sk.mean}, Metric{"baseline_sd", sk.sd}, Metric{"baseline", float64(sk.base)},
				Metric{"unique_hosts", float64(r.ihosts + r.xhosts)})
			e.signals = append(e.signals, s)
		case PrivilegedAccess:
			c := &cfg.PrivilegedAccess
			var v, th float64
			switch {
			case r.privPorts >= uint32(c.MinPorts):
				v, th = float64(r.privPorts), float64(c.MinPorts)
			case r.privHosts >= uint32(c.MinHosts):
				v, th = float64(r.privHosts), float64(c.MinHosts)
			default:
				continue
			}
			fired |= 1 << uint(i)
			s := e.hostSignal(r, PrivilegedAccess, v, th, c.Bands.severity(float64(r.privServices), false))
			if !e.admit(&s, sp.size, sp.hop, float64(r.privServices)*1e6+v) {
				continue
			}
			s.Metrics = e.metrics(Metric{"unique_services", float64(r.privServices)}, Metric{"unique_ports", float64(r.privPorts)},
				Metric{"unique_hosts", float64(r.privHosts)})
			for _, el := range e.hostDetail(r.hostIdx, tagCombo, -1, tp, panes, math.MaxInt) {
				if p := elemPort(el); e.privPorts.has(p) && !slices.Contains(s.Ports, p) {
					s.Ports = append(s.Ports, p)
				}
			}
			slices.Sort(s.Ports)
			for _, p := range s.Ports {
				if n := serviceName(p); !slices.Contains(s.Services, n) {
					s.Services = append(s.Services, n)
				}
			}
			s.Dsts = e.detailAddrs(e.hostDetail(r.hostIdx, tagPriv, -1, tp, panes, maxDetailDsts))
			e.signals = append(e.signals, s)
		case HostSweep:
			c := &cfg.HostSweep
			onePort := r.maxHosts >= uint32(c.MinHostsOnePort)
			fanOut := c.MinInternalHosts > 0 && r.ihosts >= uint32(c.MinInternalHosts)
			if !onePort && !fanOut {
				continue
			}
			fired |= 1 << uint(i)
			// One port swept, or many internal hosts over many ports (a
			// sweep too slow for PORT_SCAN's minute).
			v, threshold := float64(r.maxHosts), float64(c.MinHostsOnePort)
			if !onePort {
				v, threshold = float64(r.ihosts), float64(c.MinInternalHosts)
			}
			s := e.hostSignal(r, HostSweep, v, threshold, c.Bands.severity(v, false))
			if !e.admit(&s, sp.size, sp.hop, v) {
				continue
			}
			s.Metrics = e.metrics(Metric{"hosts_on_port", float64(r.maxHosts)}, Metric{"port", float64(r.maxPort)},
				Metric{"unique_internal_hosts", float64(r.ihosts)}, Metric{"unique_hosts", float64(r.ihosts)})
			if onePort {
				s.Ports = []uint16{r.maxPort}
				s.Dsts = e.detailAddrs(e.hostDetail(r.hostIdx, tagCombo, int(r.maxPort), tp, panes, maxDetailDsts))
			} else {
				s.Dsts = e.detailAddrs(e.hostDetail(r.hostIdx, tagIHost, -1, tp, panes, maxDetailDsts))
			}
			e.signals = append(e.signals, s)
		case FailedConnections:
			c := &cfg.FailedConnections
			if r.known < uint32(c.MinAttempts) {
				continue
			}
			ratio := float64(r.failed) / float64(r.known)
			if ratio < c.MinRatio {
				continue
			}
			fired |= 1 << uint(i)
			s := e.hostSignal(r, FailedConnections, ratio, c.MinRatio, c.Bands.severity(float64(r.failed), false))
			if !e.admit(&s, sp.size, sp.hop, float64(r.failed)) {
				continue
			}
			s.Metrics = e.metrics(Metric{"failed_connections", float64(r.failed)}, Metric{"attempts", float64(r.known)},
				Metric{"failed_ratio", ratio})
			e.signals = append(e.signals, s)
		case DataStaging:
			c := &cfg.DataStaging
			if r.stagingBytes <= c.TotalBytesOver {
				continue
			}
			fired |= 1 << uint(i)
			v := float64(r.stagingBytes)
			s := e.hostSignal(r, DataStaging, v, float64(c.TotalBytesOver), c.Bands.severity(v, false))
			if !e.admit(&s, sp.size, sp.hop, v) {
				continue
			}
			s.Metrics = e.metrics(Metric{"total_bytes_staged", v}, Metric{"transfer_count", float64(r.staging)})
			e.signals = append(e.signals, s)
		case OutboundSpike:
			c := &cfg.OutboundSpike
			sk := &e.spikes[i]
			mean, sd, z := sk.mean, sk.sd, sk.z
			v := float64(r.bytesOutExt)
			r.bytesZ, r.bytesZOK, r.bytesBase = z, true, sk.base
			// Divergence from the reference: it emits OUTBOUND_SPIKE HIGH
			// for 10.100.60.40 (50 MB to 8.8.8.8, deviation 0.0). With
			// the definition (> 1 GB, or z > 3) 50 MB is z 0 and
			// no signal at all.
			over := v > float64(c.BytesOver)
			if !over && !(z > c.ZOver) {
				continue
			}
			fired |= 1 << uint(i)
			sev := c.Bands.severity(z, false)
			if over {
				sev = max(sev, c.AbsoluteSeverity)
			}
			s := e.hostSignal(r, OutboundSpike, v, min(float64(c.BytesOver), mean+c.ZOver*sd), sev)
			if !e.admit(&s, sp.size, sp.hop, v) {
				continue
			}
			if r.bytesIn > 0 {
				s.Metrics = e.metrics(Metric{"bytes_uploaded", v}, Metric{"bytes_downloaded", float64(r.bytesIn)},
					Metric{"upload_ratio", v / float64(r.bytesIn)}, Metric{"deviation_score", z},
					Metric{"baseline_mean", mean}, Metric{"baseline_sd", sd}, Metric{"baseline", float64(sk.base)})
			} else {
				s.Metrics = e.metrics(Metric{"bytes_uploaded", v}, Metric{"bytes_downloaded", 0},
					Metric{"deviation_score", z},
					Metric{"baseline_mean", mean}, Metric{"baseline_sd", sd}, Metric{"baseline", float64(sk.base)})
			}
			e.signals = append(e.signals, s)
		case DestinationDiversity:
			c := &cfg.DestinationDiversity
			if r.large < uint32(c.MinDestinations) || r.largeBytes <= c.TotalBytesOver {
				continue
			}
			fired |= 1 << uint(i)
			v := float64(r.large)
			s := e.hostSignal(r, DestinationDiversity, v, float64(c.MinDestinations), c.Bands.severity(v, false))
			if !e.admit(&s, sp.size, sp.hop, v) {
				continue
			}
			s.Metrics = e.metrics(Metric{"unique_destinations", v}, Metric{"total_bytes_sent", float64(r.largeBytes)})
			s.Dsts = e.detailAddrs(e.hostDetail(r.hostIdx, tagLarge, -1, tp, panes, maxDetailDsts))
			e.signals = append(e.signals, s)
		}
	}
	return fired
}

func (e *Engine) hostSignal(r *hostRow, typ SignalType, v, th float64, sev Severity) Signal {
	return Signal{
		Type: typ, Src: r.host.addr(), WindowStart: r.start, WindowEnd: r.end,
		FirstSeen: r.first, LastSeen: r.last, Severity: sev, Value: v, Threshold: th,
	}
}

// detailAddrs turns address elements into addresses.
func (e *Engine) detailAddrs(els []uint64) []netip.Addr {
	out := make([]netip.Addr, len(els))
	for i, el := range els {
		out[i] = e.addrs.keys[elemAddr(el)].addr()
	}
	return out
}

// baseline returns the host's mean and sd for metric, or the prior, and
// which one it used (0 prior, 1 host).
func (e *Engine) baseline(host addrKey, metric string, at int64, pm, psd float64) (mean, sd float64, used uint8) {
	if e.baselines != nil {
		if m, s, ok := e.baselines.Lookup(host.addr(), metric, at); ok && s > 0 && !math.IsNaN(m) && !math.IsInf(m, 0) {
			return m, s, 1
		}
	}
	return pm, psd, 0
}

// pairSignals evaluates the pair signals in specs (indices into
// pairSpecs) on r's window (end is the tick for hopping windows, the
// session end for sessions) and reports whether any fired. Prevalence is
// counted only when a signal needs it.
func (e *Engine) pairSignals(r *pairRow, specs uint16) bool {
	cfg := &e.cfg.Signals
	fired := false
	for i := range e.pairSpecs {
		sp := &e.pairSpecs[i]
		if sp.shape != r.shape || specs&(1<<uint(i)) == 0 {
			continue
		}
		switch sp.typ {
		case PeriodicBeacon:
			c := &cfg.PeriodicBeacon
			// Regular gaps: coefficient of variation sd/mean below
			// cv_below (the reference: >= 3 connections, CV < 0.3).
			if r.conns >= uint32(c.MinConnections) && r.hasGaps && !slices.Contains(c.ExcludedPorts, r.port) &&
				r.gapMean*1e6 >= float64(c.MinMeanGap.micros()) && r.gapCV < c.CVBelow {
				fired = true
				s := e.pairSignal(r, PeriodicBeacon, r.gapCV, c.CVBelow, c.Bands.severity(float64(r.conns), false))
				if !e.admit(&s, r.end-r.start, sp.hop, float64(r.conns)) {
					continue
				}
				s.Metrics = e.metrics(Metric{"connection_count", float64(r.conns)}, Metric{"avg_interval_seconds", r.gapMean},
					Metric{"interval_stddev", r.gapSD}, Metric{"interval_cv", r.gapCV},
					Metric{"total_bytes_sent", float64(r.out)}, Metric{"total_bytes_received", float64(r.in)})
				e.signals = append(e.signals, s)
			}
		case PersistentDestination:
			c := &cfg.PersistentDestination
			if r.conns < uint32(c.MinConnections) || slices.Contains(c.ExcludedPorts, r.port) {
				continue
			}
			e.pairSources(r)
			if !r.sourcesCapped && r.sources < uint32(c.InternalHostsBelow) {
				fired = true
				s := e.pairSignal(r, PersistentDestination, float64(r.conns), float64(c.MinConnections),
					c.Bands.severity(float64(r.sources), true))
				if !e.admit(&s, r.end-r.start, sp.hop, -float64(r.sources)*1e9+float64(r.conns)) {
					continue
				}
				s.Metrics = e.metrics(Metric{"connection_count", float64(r.conns)}, Metric{"internal_hosts_contacting", float64(r.sources)},
					Metric{"total_bytes_sent", float64(r.out)}, Metric{"total_bytes_received", float64(r.in)})
				e.signals = append(e.signals, s)
			}
		case CommandExchange:
			c := &cfg.CommandExchange
			if r.conns < uint32(c.MinExchanges) || r.out == 0 || slices.Contains(c.ExcludedPorts, r.port) {
				continue
			}
			n := float64(r.conns)
			req, resp := float64(r.out)/n, float64(r.in)/n
			ratio := float64(r.in) / float64(r.out)
			// The reference: mean request < 500 B, mean response > 2x
			// the request, total received / sent > 3.
			if req < c.MeanRequestBelow && resp > c.ResponseOverRequest*req && ratio > c.TotalRatioOver {
				s := e.pairSignal(r, CommandExchange, ratio, c.TotalRatioOver, c.Bands.severity(n, false))
				s.Metrics = e.metrics(Metric{"exchange_count", n}, Metric{"avg_request_size", req}, Metric{"avg_response_size", resp},
					Metric{"total_sent", float64(r.out)}, Metric{"total_received", float64(r.in)}, Metric{"response_ratio", ratio})
				// Sessions never overlap: no suppression.
				e.signals = append(e.signals, s)
				fired = true
			}
		}
	}
	return fired
}

func (e *Engine) pairSignal(r *pairRow, typ SignalType, v, th float64, sev Severity) Signal {
	dst := r.dst.addr()
	return Signal{
		Type: typ, Src: r.src.addr(), Dst: dst, DstPort: r.port, WindowStart: r.start, WindowEnd: r.end,
		FirstSeen: r.first, LastSeen: r.last, Severity: sev, Value: v, Threshold: th,
		Dsts: take(&e.addrBlock, dst), Ports: take(&e.portBlock, r.port),
	}
}

// admit decides whether s is emitted: not when it repeats, for an
// overlapping window of a hopping spec (size over hop), one already
// emitted for the same entity without rising in severity or strength (the
// signal's band quantity, oriented so that more is worse).
func (e *Engine) admit(s *Signal, size, hop int64, strength float64) bool {
	if !e.cfg.Output.SuppressRepeats || size <= hop {
		return true
	}
	k := suppKey{typ: s.Type, src: s.Src, dst: s.Dst, port: s.DstPort}
	if st, ok := e.supp[k]; ok && s.WindowStart < st.end && s.Severity <= st.sev && strength <= st.strength {
		e.stats.SignalsSuppressed++
		return false
	}
	e.supp[k] = suppState{end: s.WindowEnd, sev: s.Severity, strength: strength}
	return true
}

// take copies vs into a shared block: one allocation serves many
// signals. Blocks go to the consumer with the signals and are never
// reused.
func take[T any](blk *[]T, vs ...T) []T {
	if len(*blk)+len(vs) > cap(*blk) {
		*blk = make([]T, 0, max(256, len(vs)))
	}
	n := len(*blk)
	*blk = append(*blk, vs...)
	return (*blk)[n : n+len(vs) : n+len(vs)]
}

// metrics copies ms into a shared block (see take).
func (e *Engine) metrics(ms ...Metric) []Metric { return take(&e.metricBlock, ms...) }

// sweepSuppression forgets entries no future window can overlap.
func (e *Engine) sweepSuppression(T int64) {
	if len(e.supp) == 0 || T < e.nextSuppSweep {
		return
	}
	e.nextSuppSweep = T + e.g.tick*6
	for k, st := range e.supp {
		if st.end <= T-e.maxSpecSize {
			delete(e.supp, k)
		}
	}
}

// serviceName names the service usually found on a port, for evidence.
func serviceName(p uint16) string {
	switch p {
	case 21:
		return "FTP"
	case 22:
		return "SSH"
	case 23:
		return "Telnet"
	case 88:
		return "Kerberos"
	case 135:
		return "RPC"
	case 139:
		return "NetBIOS"
	case 389, 636:
		return "LDAP"
	case 445:
		return "SMB"
	case 1433:
		return "MSSQL"
	case 2049:
		return "NFS"
	case 3306:
		return "MySQL"
	case 3389:
		return "RDP"
	case 5432:
		return "PostgreSQL"
	case 5900:
		return "VNC"
	case 5985, 5986:
		return "WinRM"
	}
	return fmt.Sprintf("port %d", p)
}

// services counts the distinct services of a privileged-port bitmap.
func (e *Engine) services(mask uint64) int {
	var s uint64
	for mask != 0 {
		i := bits.TrailingZeros64(mask)
		mask &= mask - 1
		s |= e.privService[i]
	}
	return bits.OnesCount64(s)
}
