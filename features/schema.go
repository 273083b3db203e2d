package features

import (
	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
)

// Arrow schemas of the feature rows that closed windows emit. Scoring
// consumes them and the store persists them as ClickHouse feature tables;
// the DDL mirrors these definitions, so a change here is a new
// SchemaVersion.
//
// Both schemas carry the metadata keys "ndr.schema" (HostSchemaName or
// PairSchemaName) and "ndr.schema_version" (SchemaVersion).
//
// Conventions: times are timestamp[us, UTC] (ClickHouse DateTime64(6,
// 'UTC')); addresses are fixed_size_binary[16], IPv4 in its IPv4-mapped
// IPv6 form (ClickHouse IPv6); bytes are decimal-agnostic raw byte counts
// from Zeek's orig_bytes/resp_bytes (payload bytes); counts are uint32;
// "window" is dictionary<int8, utf8> (ClickHouse LowCardinality(String)).
// Windows are [window_start, window_end).
//
// host_features v1: one row per internal source host and window size with
// at least one connection in the window. Every window size of an enabled
// host signal gets rows whenever one of its hops divides window_end.
//
//	window_start                 timestamp   window start (inclusive)
//	window_end                   timestamp   window end (exclusive)
//	window                       dict string window length as Go prints it: "1m0s", "5m0s", "10m0s"
//	host                         fsb[16]     the internal source
//	connections                  uint32      connections the host originated
//	failed_connections           uint32      of which never completed a handshake (S0, REJ, RSTOS0, RSTRH, SH, SHR)
//	state_known_connections      uint32      of which Zeek reported a conn_state (failed-ratio denominator)
//	failed_ratio                 float64     failed / state_known; null when state_known is 0
//	distinct_ports               uint32      distinct destination ports, any destination
//	distinct_internal_hosts      uint32      distinct internal destinations
//	privileged_ports             uint32      distinct privileged ports used on internal destinations
//	privileged_services          uint32      distinct services among them (5985 and 5986 are both WinRM)
//	privileged_hosts             uint32      distinct internal destinations reached on a privileged port
//	max_hosts_one_port           uint32      most internal destinations reached on a single port
//	max_hosts_port               uint16      that port (the lowest on a tie); null when no internal destination
//	bytes_out                    uint64      orig bytes, all destinations
//	bytes_in                     uint64      resp bytes, all destinations
//	bytes_out_external           uint64      orig bytes to external destinations
//	staging_transfers            uint32      internal transfers on staging ports over the transfer threshold
//	staging_bytes                uint64      their orig + resp bytes
//	large_external_destinations  uint32      distinct external destinations of connections over the large threshold
//	large_external_bytes         uint64      orig bytes of those connections
//	first_seen                   timestamp   first connection in the window
//	last_seen                    timestamp   last connection in the window
//	sets_saturated               bool        a distinct set hit limits.max_set_elements: distinct counts are
//	                                         the stored elements plus refused insertions (an over-estimate)
//	connections_z                float64     CONNECTION_SPIKE z; null unless this row is that signal's window
//	connections_baseline         uint8       0 prior, 1 host baseline; null with connections_z
//	bytes_out_external_z         float64     OUTBOUND_SPIKE z (in MB, as the reference); null unless its window
//	bytes_out_external_baseline  uint8       0 prior, 1 host baseline; null with bytes_out_external_z
//
// pair_features v1: one row per (internal source, destination, port) and
// window with at least output.pair_row_min_connections connections (or a
// signal). Hopping windows of PERIODIC_BEACON and PERSISTENT_DESTINATION,
// and closed sessions of COMMAND_EXCHANGE (window "session", bounded by
// the session's first connection and min(last + gap, cut)).
//
//	window_start                 timestamp   window start, or first connection of the session
//	window_end                   timestamp   window end, or session end
//	window                       dict string "5m0s", "10m0s", ... or "session"
//	src                          fsb[16]     internal source
//	dst                          fsb[16]     destination
//	dst_port                     uint16      destination port
//	dst_internal                 bool        the destination is internal (limits.track_internal_pairs)
//	connections                  uint32      connections in the window
//	gap_mean_s                   float64     mean gap between consecutive connections, seconds; null below 2 connections
//	gap_sd_s                     float64     population standard deviation of the gaps; null below 2 connections
//	gap_cv                       float64     gap_sd_s / gap_mean_s; null below 2 connections or when the mean is 0
//	bytes_out                    uint64      orig bytes
//	bytes_in                     uint64      resp bytes
//	dst_internal_sources         uint32      distinct internal sources that contacted dst (any port) in the
//	                                         window, counted up to persistent_destination.internal_hosts_below
//	dst_internal_sources_capped  bool        the count stopped at that limit: the destination is at least that common
//	first_seen                   timestamp   first connection
//	last_seen                    timestamp   last connection
const (
	SchemaVersion  = "1"
	HostSchemaName = "host_features"
	PairSchemaName = "pair_features"

	// Metadata keys of both schemas.
	MetaSchema        = "ndr.schema"
	MetaSchemaVersion = "ndr.schema_version"

	// SessionWindowName is the "window" value of session rows.
	SessionWindowName = "session"
)

// Types are built per schema rather than shared through package
// variables, which anyone could mutate.
func tsType() arrow.DataType   { return &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"} }
func addrType() arrow.DataType { return &arrow.FixedSizeBinaryType{ByteWidth: 16} }
func dictType() arrow.DataType {
	return &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String}
}

// Column positions, in schema order.
const (
	hcStart = iota
	hcEnd
	hcWindow
	hcHost
	hcConns
	hcFailed
	hcKnown
	hcFailedRatio
	hcPorts
	hcIHosts
	hcPrivPorts
	hcPrivServices
	hcPrivHosts
	hcMaxHosts
	hcMaxPort
	hcBytesOut
	hcBytesIn
	hcBytesOutExt
	hcStaging
	hcStagingBytes
	hcLarge
	hcLargeBytes
	hcFirst
	hcLast
	hcSaturated
	hcConnZ
	hcConnBase
	hcBytesZ
	hcBytesBase
)

const (
	pcStart = iota
	pcEnd
	pcWindow
	pcSrc
	pcDst
	pcPort
	pcDstInternal
	pcConns
	pcGapMean
	pcGapSD
	pcGapCV
	pcBytesOut
	pcBytesIn
	pcSources
	pcSourcesCapped
	pcFirst
	pcLast
)

// HostSchema returns the host_features schema (a new value each call;
// schemas are immutable).
func HostSchema() *arrow.Schema {
	f := func(name string, t arrow.DataType, nullable bool) arrow.Field {
		return arrow.Field{Name: name, Type: t, Nullable: nullable}
	}
	u32, u64 := arrow.PrimitiveTypes.Uint32, arrow.PrimitiveTypes.Uint64
	md := arrow.NewMetadata([]string{MetaSchema, MetaSchemaVersion}, []string{HostSchemaName, SchemaVersion})
	return arrow.NewSchema([]arrow.Field{
		f("window_start", tsType(), false),
		f("window_end", tsType(), false),
		f("window", dictType(), false),
		f("host", addrType(), false),
		f("connections", u32, false),
		f("failed_connections", u32, false),
		f("state_known_connections", u32, false),
		f("failed_ratio", arrow.PrimitiveTypes.Float64, true),
		f("distinct_ports", u32, false),
		f("distinct_internal_hosts", u32, false),
		f("privileged_ports", u32, false),
		f("privileged_services", u32, false),
		f("privileged_hosts", u32, false),
		f("max_hosts_one_port", u32, false),
		f("max_hosts_port", arrow.PrimitiveTypes.Uint16, true),
		f("bytes_out", u64, false),
		f("bytes_in", u64, false),
		f("bytes_out_external", u64, false),
		f("staging_transfers", u32, false),
		f("staging_bytes", u64, false),
		f("large_external_destinations", u32, false),
		f("large_external_bytes", u64, false),
		f("first_seen", tsType(), false),
		f("last_seen", tsType(), false),
		f("sets_saturated", arrow.FixedWidthTypes.Boolean, false),
		f("connections_z", arrow.PrimitiveTypes.Float64, true),
		f("connections_baseline", arrow.PrimitiveTypes.Uint8, true),
		f("bytes_out_external_z", arrow.PrimitiveTypes.Float64, true),
		f("bytes_out_external_baseline", arrow.PrimitiveTypes.Uint8, true),
	}, &md)
}

// PairSchema returns the pair_features schema.
func PairSchema() *arrow.Schema {
	f := func(name string, t arrow.DataType, nullable bool) arrow.Field {
		return arrow.Field{Name: name, Type: t, Nullable: nullable}
	}
	u32, u64, f64 := arrow.PrimitiveTypes.Uint32, arrow.PrimitiveTypes.Uint64, arrow.PrimitiveTypes.Float64
	md := arrow.NewMetadata([]string{MetaSchema, MetaSchemaVersion}, []string{PairSchemaName, SchemaVersion})
	return arrow.NewSchema([]arrow.Field{
		f("window_start", tsType(), false),
		f("window_end", tsType(), false),
		f("window", dictType(), false),
		f("src", addrType(), false),
		f("dst", addrType(), false),
		f("dst_port", arrow.PrimitiveTypes.Uint16, false),
		f("dst_internal", arrow.FixedWidthTypes.Boolean, false),
		f("connections", u32, false),
		f("gap_mean_s", f64, true),
		f("gap_sd_s", f64, true),
		f("gap_cv", f64, true),
		f("bytes_out", u64, false),
		f("bytes_in", u64, false),
		f("dst_internal_sources", u32, false),
		f("dst_internal_sources_capped", arrow.FixedWidthTypes.Boolean, false),
		f("first_seen", tsType(), false),
		f("last_seen", tsType(), false),
	}, &md)
}

// hostRow is one host_features row before it goes into Arrow; signals are
// evaluated from it.
type hostRow struct {
	start, end   int64
	shape        int
	host         addrKey
	hostHi       uint64 // sort key: host.halves()
	hostLo       uint64
	hostIdx      int32
	conns        uint32
	failed       uint32
	known        uint32
	ports        uint32
	ihosts       uint32
	xhosts       uint32 // distinct external destinations (no column: the unique_hosts metric)
	privPorts    uint32
	privServices uint32
	privHosts    uint32
	maxHosts     uint32
	maxPort      uint16
	bytesOut     uint64
	bytesIn      uint64
	bytesOutExt  uint64
	staging      uint32
	stagingBytes uint64
	large        uint32
	largeBytes   uint64
	first, last  int64
	saturated    bool
	connZ        float64
	connZOK      bool
	connBase     uint8
	bytesZ       float64
	bytesZOK     bool
	bytesBase    uint8
}

// pairRow is one pair_features row.
type pairRow struct {
	start, end    int64
	shape         int // index into pairShapes; len(pairShapes) for a session
	pairIdx       int32
	src, dst      addrKey
	srcHi, srcLo  uint64 // sort keys: halves()
	dstHi, dstLo  uint64
	port          uint16
	dstInternal   bool
	conns         uint32
	gapMean       float64
	gapSD         float64
	gapCV         float64
	hasGaps       bool
	out, in       uint64
	sources       uint32
	sourcesCapped bool
	sourcesDone   bool // sources counted (they are only when needed)
	first, last   int64
}

// appendHostRows appends rows in the given order, column by column.
func (e *Engine) appendHostRows(b *array.RecordBuilder, rows []hostRow, order []rowKey) {
	n := len(order)
	if n == 0 {
		return
	}
	b.Reserve(n)
	ts := func(col int, f func(r *hostRow) int64) {
		c := b.Field(col).(*array.TimestampBuilder)
		for _, k := range order {
			c.UnsafeAppend(arrow.Timestamp(f(&rows[k.idx])))
		}
	}
	u32 := func(col int, f func(r *hostRow) uint32) {
		c := b.Field(col).(*array.Uint32Builder)
		for _, k := range order {
			c.UnsafeAppend(f(&rows[k.idx]))
		}
	}
	u64 := func(col int, f func(r *hostRow) uint64) {
		c := b.Field(col).(*array.Uint64Builder)
		for _, k := range order {
			c.UnsafeAppend(f(&rows[k.idx]))
		}
	}
	ts(hcStart, func(r *hostRow) int64 { return r.start })
	ts(hcEnd, func(r *hostRow) int64 { return r.end })
	win := b.Field(hcWindow).(*array.BinaryDictionaryBuilder)
	addr := b.Field(hcHost).(*array.FixedSizeBinaryBuilder)
	for _, k := range order {
		r := &rows[k.idx]
		_ = win.Append(e.hostShapes[r.shape].nameB) // a utf8 value never fails
		addr.Append(r.host[:])
	}
	u32(hcConns, func(r *hostRow) uint32 { return r.conns })
	u32(hcFailed, func(r *hostRow) uint32 { return r.failed })
	u32(hcKnown, func(r *hostRow) uint32 { return r.known })
	ratio := b.Field(hcFailedRatio).(*array.Float64Builder)
	for _, k := range order {
		if r := &rows[k.idx]; r.known > 0 {
			ratio.UnsafeAppend(float64(r.failed) / float64(r.known))
		} else {
			ratio.UnsafeAppendBoolToBitmap(false)
		}
	}
	u32(hcPorts, func(r *hostRow) uint32 { return r.ports })
	u32(hcIHosts, func(r *hostRow) uint32 { return r.ihosts })
	u32(hcPrivPorts, func(r *hostRow) uint32 { return r.privPorts })
	u32(hcPrivServices, func(r *hostRow) uint32 { return r.privServices })
	u32(hcPrivHosts, func(r *hostRow) uint32 { return r.privHosts })
	u32(hcMaxHosts, func(r *hostRow) uint32 { return r.maxHosts })
	maxPort := b.Field(hcMaxPort).(*array.Uint16Builder)
	for _, k := range order {
		if r := &rows[k.idx]; r.maxHosts > 0 {
			maxPort.UnsafeAppend(r.maxPort)
		} else {
			maxPort.UnsafeAppendBoolToBitmap(false)
		}
	}
	u64(hcBytesOut, func(r *hostRow) uint64 { return r.bytesOut })
	u64(hcBytesIn, func(r *hostRow) uint64 { return r.bytesIn })
	u64(hcBytesOutExt, func(r *hostRow) uint64 { return r.bytesOutExt })
	u32(hcStaging, func(r *hostRow) uint32 { return r.staging })
	u64(hcStagingBytes, func(r *hostRow) uint64 { return r.stagingBytes })
	u32(hcLarge, func(r *hostRow) uint32 { return r.large })
	u64(hcLargeBytes, func(r *hostRow) uint64 { return r.largeBytes })
	ts(hcFirst, func(r *hostRow) int64 { return r.first })
	ts(hcLast, func(r *hostRow) int64 { return r.last })
	sat := b.Field(hcSaturated).(*array.BooleanBuilder)
	for _, k := range order {
		sat.UnsafeAppend(rows[k.idx].saturated)
	}
	z := func(zc, bc int, f func(r *hostRow) (float64, uint8, bool)) {
		zb := b.Field(zc).(*array.Float64Builder)
		bb := b.Field(bc).(*array.Uint8Builder)
		for _, k := range order {
			if v, base, ok := f(&rows[k.idx]); ok {
				zb.UnsafeAppend(v)
				bb.UnsafeAppend(base)
			} else {
				zb.UnsafeAppendBoolToBitmap(false)
				bb.UnsafeAppendBoolToBitmap(false)
			}
		}
	}
	z(hcConnZ, hcConnBase, func(r *hostRow) (float64, uint8, bool) { return r.connZ, r.connBase, r.connZOK })
	z(hcBytesZ, hcBytesBase, func(r *hostRow) (float64, uint8, bool) { return r.bytesZ, r.bytesBase, r.bytesZOK })
}

// appendPairRows appends rows in the given order, column by column.
func (e *Engine) appendPairRows(b *array.RecordBuilder, rows []pairRow, order []rowKey) {
	n := len(order)
	if n == 0 {
		return
	}
	b.Reserve(n)
	ts := func(col int, f func(r *pairRow) int64) {
		c := b.Field(col).(*array.TimestampBuilder)
		for _, k := range order {
			c.UnsafeAppend(arrow.Timestamp(f(&rows[k.idx])))
		}
	}
	u64 := func(col int, f func(r *pairRow) uint64) {
		c := b.Field(col).(*array.Uint64Builder)
		for _, k := range order {
			c.UnsafeAppend(f(&rows[k.idx]))
		}
	}
	bl := func(col int, f func(r *pairRow) bool) {
		c := b.Field(col).(*array.BooleanBuilder)
		for _, k := range order {
			c.UnsafeAppend(f(&rows[k.idx]))
		}
	}
	ts(pcStart, func(r *pairRow) int64 { return r.start })
	ts(pcEnd, func(r *pairRow) int64 { return r.end })
	win := b.Field(pcWindow).(*array.BinaryDictionaryBuilder)
	src := b.Field(pcSrc).(*array.FixedSizeBinaryBuilder)
	dst := b.Field(pcDst).(*array.FixedSizeBinaryBuilder)
	for _, k := range order {
		r := &rows[k.idx]
		_ = win.Append(e.pairShapeNameB(r.shape))
		src.Append(r.src[:])
		dst.Append(r.dst[:])
	}
	port := b.Field(pcPort).(*array.Uint16Builder)
	conns := b.Field(pcConns).(*array.Uint32Builder)
	sources := b.Field(pcSources).(*array.Uint32Builder)
	for _, k := range order {
		r := &rows[k.idx]
		port.UnsafeAppend(r.port)
		conns.UnsafeAppend(r.conns)
		sources.UnsafeAppend(r.sources)
	}
	bl(pcDstInternal, func(r *pairRow) bool { return r.dstInternal })
	mean := b.Field(pcGapMean).(*array.Float64Builder)
	sd := b.Field(pcGapSD).(*array.Float64Builder)
	cv := b.Field(pcGapCV).(*array.Float64Builder)
	for _, k := range order {
		r := &rows[k.idx]
		if !r.hasGaps {
			mean.UnsafeAppendBoolToBitmap(false)
			sd.UnsafeAppendBoolToBitmap(false)
			cv.UnsafeAppendBoolToBitmap(false)
			continue
		}
		mean.UnsafeAppend(r.gapMean)
		sd.UnsafeAppend(r.gapSD)
		if r.gapCV == r.gapCV { // not NaN: the mean gap is positive
			cv.UnsafeAppend(r.gapCV)
		} else {
			cv.UnsafeAppendBoolToBitmap(false)
		}
	}
	u64(pcBytesOut, func(r *pairRow) uint64 { return r.out })
	u64(pcBytesIn, func(r *pairRow) uint64 { return r.in })
	bl(pcSourcesCapped, func(r *pairRow) bool { return r.sourcesCapped })
	ts(pcFirst, func(r *pairRow) int64 { return r.first })
	ts(pcLast, func(r *pairRow) int64 { return r.last })
}

func (e *Engine) pairShapeNameB(shape int) []byte {
	if shape >= len(e.pairShapes) {
		return e.sessionName
	}
	return e.pairShapes[shape].nameB
}
