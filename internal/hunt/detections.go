package hunt

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/internal/store"
	"github.com/ndr-go/ndr/scoring"
)

// DetectionFilter selects stored detections. Zero fields select everything.
type DetectionFilter struct {
	// From and To keep detections whose span [FirstSeen, LastSeen]
	// overlaps [From, To): event time, as the detection reports it.
	From, To time.Time
	// Types keeps these detection types (e.g. C2_BEACONING).
	Types []string
	// MinSeverity keeps detections at least this severe.
	MinSeverity features.Severity
	// Host keeps detections whose source or one of whose destinations is
	// this address.
	Host netip.Addr
	// Limit bounds a page: DefaultLimit when 0, at most MaxLimit.
	Limit int
	// PageToken continues a listing where the page that returned it
	// ended; empty starts at the newest.
	PageToken string
}

// Page sizes of ListDetections.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// StoredDetection is the latest version of a detection as stored, with
// when the store received that version.
type StoredDetection struct {
	scoring.Detection
	DetectedAt time.Time
}

var typeRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// Validate reports every problem of the filter; they are usage errors.
func (f DetectionFilter) Validate() error {
	var errs []error
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		errs = append(errs, fmt.Errorf("from %s is not before to %s", f.From.Format(time.RFC3339), f.To.Format(time.RFC3339)))
	}
	for _, t := range f.Types {
		if !typeRE.MatchString(t) {
			errs = append(errs, fmt.Errorf("type %q: want letters, digits, '_', '.', '-'", t))
		}
	}
	if f.MinSeverity > features.Critical {
		errs = append(errs, fmt.Errorf("min severity %d: want %s to %s", f.MinSeverity, features.Low, features.Critical))
	}
	if f.Limit < 0 || f.Limit > MaxLimit {
		errs = append(errs, fmt.Errorf("limit %d: want 0 (default %d) to %d", f.Limit, DefaultLimit, MaxLimit))
	}
	if _, _, err := decodePageToken(f.PageToken); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return usage(errors.Join(errs...))
	}
	return nil
}

// Match says whether d passes the filter (ignoring Limit and PageToken):
// the same test ListDetections makes in SQL, for live streams.
func (f DetectionFilter) Match(d *scoring.Detection) bool {
	if !f.From.IsZero() && d.LastSeen < f.From.UnixMicro() {
		return false
	}
	if !f.To.IsZero() && d.FirstSeen >= f.To.UnixMicro() {
		return false
	}
	if len(f.Types) > 0 && !contains(f.Types, d.Type) {
		return false
	}
	if d.Severity < f.MinSeverity {
		return false
	}
	if f.Host.IsValid() {
		h := f.Host.Unmap()
		if d.Src.Unmap() != h && !containsAddr(d.Dsts, h) {
			return false
		}
	}
	return true
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x.Unmap() == a {
			return true
		}
	}
	return false
}

// listSQL reads detections newest first, keyed by (first_seen,
// detection_id) so that pages continue exactly where the last one ended.
const listSQL = `SELECT detection_id, version, rule_id, type, src, dst_ips, first_seen, last_seen,
    toString(severity), confidence, score, count, signals, evidence, mitre, recommended_actions, detected_at
FROM detections FINAL
WHERE ({from:Nullable(DateTime64(6, 'UTC'))} IS NULL OR last_seen >= {from:Nullable(DateTime64(6, 'UTC'))})
  AND ({to:Nullable(DateTime64(6, 'UTC'))} IS NULL OR first_seen < {to:Nullable(DateTime64(6, 'UTC'))})
  AND (empty({types:Array(String)}) OR has({types:Array(String)}, type))
  AND toInt8(severity) >= {min_severity:Int8}
  AND ({host:Nullable(IPv6)} IS NULL OR src = {host:Nullable(IPv6)} OR has(dst_ips, {host:Nullable(IPv6)}))
  AND ({after_id:Nullable(String)} IS NULL
       OR (first_seen, detection_id) < ({after_ts:DateTime64(6, 'UTC')}, {after_id:Nullable(String)}))
ORDER BY first_seen DESC, detection_id DESC
LIMIT {limit:UInt32}`

// ListDetections returns a page of the latest versions of the detections
// f selects, newest first (by FirstSeen, then ID), and the token of the
// next page, empty after the last.
func ListDetections(ctx context.Context, db Querier, f DetectionFilter) ([]StoredDetection, string, error) {
	if err := f.Validate(); err != nil {
		return nil, "", err
	}
	limit := f.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	p := store.Params{
		"from": nullValue, "to": nullValue, "host": nullValue, "after_id": nullValue, "after_ts": "1970-01-01 00:00:00",
		"types":        stringArray(f.Types),
		"min_severity": strconv.Itoa(int(f.MinSeverity)),
		"limit":        strconv.Itoa(limit + 1), // one more says whether a next page exists
	}
	if !f.From.IsZero() {
		p["from"] = FormatParamTime(f.From)
	}
	if !f.To.IsZero() {
		p["to"] = FormatParamTime(f.To)
	}
	if f.Host.IsValid() {
		p["host"] = f.Host.Unmap().String()
	}
	if ts, id, _ := decodePageToken(f.PageToken); id != "" {
		p["after_ts"], p["after_id"] = FormatParamTime(ts), escapeText(id)
	}
	rows, err := db.Query(store.WithParams(ctx, p), listSQL)
	if err != nil {
		return nil, "", fmt.Errorf("list detections: %w", err)
	}
	defer rows.Close()
	var out []StoredDetection
	for rows.Next() {
		var (
			r                        detectionRow
			src                      netip.Addr
			dsts                     []net.IP
			first, last, detectedAt  time.Time
			score                    uint8
			count                    uint32
			signals, evidence, mitre string
		)
		if err := rows.Scan(&r.ID, &r.Version, &r.RuleID, &r.Type, &src, &dsts, &first, &last, &r.Severity,
			&r.Confidence, &score, &count, &signals, &evidence, &mitre, &r.RecommendedActions, &detectedAt); err != nil {
			return nil, "", fmt.Errorf("read detections: %w", err)
		}
		r.Src, r.First, r.Last = src.Unmap(), first.UTC().Format(time.RFC3339Nano), last.UTC().Format(time.RFC3339Nano)
		r.Dsts = make([]netip.Addr, len(dsts))
		for i, ip := range dsts {
			a, ok := netip.AddrFromSlice(ip)
			if !ok {
				return nil, "", fmt.Errorf("read detection %s: bad address in dst_ips", r.ID)
			}
			r.Dsts[i] = a.Unmap()
		}
		r.Score, r.Count = int(score), int(count)
		r.Signals, r.Evidence, r.MITRE = json.RawMessage(signals), json.RawMessage(evidence), json.RawMessage(mitre)
		d, err := r.detection()
		if err != nil {
			return nil, "", fmt.Errorf("read detection %s: %w", r.ID, err)
		}
		out = append(out, StoredDetection{Detection: d, DetectedAt: detectedAt.UTC()})
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("read detections: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1]
		next = encodePageToken(time.UnixMicro(last.FirstSeen), last.ID)
	}
	return out, next, nil
}

// detectionRow is a stored row in the JSON shape scoring.Detection reads,
// so that the stored JSON columns (signals, evidence, mitre) come back
// through the one decoder that owns their format.
type detectionRow struct {
	ID                 string          `json:"detection_id"`
	Version            uint64          `json:"-"`
	RuleID             string          `json:"rule_id"`
	Type               string          `json:"type"`
	Src                netip.Addr      `json:"src_ip"`
	Dsts               []netip.Addr    `json:"dst_ips"`
	First              string          `json:"first_seen"`
	Last               string          `json:"last_seen"`
	Severity           string          `json:"severity"`
	Confidence         float64         `json:"confidence"`
	Score              int             `json:"score"`
	Signals            json.RawMessage `json:"signals"`
	Evidence           json.RawMessage `json:"evidence"`
	MITRE              json.RawMessage `json:"mitre"`
	RecommendedActions []string        `json:"recommended_actions"`
	Count              int             `json:"count"`
}

func (r *detectionRow) detection() (scoring.Detection, error) {
	var d scoring.Detection
	b, err := json.Marshal(r)
	if err != nil {
		return d, err
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, err
	}
	d.Version = r.Version
	return d, nil
}

// stringArray writes an Array(String) query parameter.
func stringArray(ss []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("'" + s + "'") // Validate admits no quote or backslash
	}
	b.WriteByte(']')
	return b.String()
}

// Page tokens are opaque to clients: base64url of "first_seen_us/id".
func encodePageToken(first time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(first.UnixMicro(), 10) + "/" + id))
}

func decodePageToken(tok string) (time.Time, string, error) {
	if tok == "" {
		return time.Time{}, "", nil
	}
	bad := errors.New("page token: not one this server returned")
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return time.Time{}, "", bad
	}
	us, id, ok := strings.Cut(string(b), "/")
	n, err := strconv.ParseInt(us, 10, 64)
	if !ok || err != nil || id == "" {
		return time.Time{}, "", bad
	}
	return time.UnixMicro(n).UTC(), id, nil
}
