package api

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/internal/hunt"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
	"github.com/ndr-go/ndr/scoring"
)

// DetectionToProto maps a detection version to the wire; detectedAt is
// when it was stored or handed to storage.
func DetectionToProto(d *scoring.Detection, detectedAt time.Time) *ndrv1.Detection {
	m := &ndrv1.Detection{
		DetectionId: d.ID, Version: d.Version, RuleId: d.RuleID, Type: d.Type,
		Src: addrBytes(d.Src), FirstSeenUs: d.FirstSeen, LastSeenUs: d.LastSeen,
		Severity:   ndrv1.Severity(min(d.Severity, features.Critical)),
		Confidence: d.Confidence, Score: uint32(max(d.Score, 0)), Count: uint32(max(d.Count, 0)),
		DetectedAtUs: detectedAt.UnixMicro(),
	}
	for _, a := range d.Dsts {
		m.Dsts = append(m.Dsts, addrBytes(a))
	}
	if b, err := d.MarshalJSON(); err == nil {
		m.Json = string(b)
	}
	return m
}

// addrBytes is 4 bytes for IPv4 (also IPv4-mapped), else 16, as ingest's
// ConnEvent carries addresses.
func addrBytes(a netip.Addr) []byte {
	if !a.IsValid() {
		return nil
	}
	return a.Unmap().AsSlice()
}

// FilterFromProto reads a wire filter; problems are hunt.ErrUsage errors.
func FilterFromProto(f *ndrv1.DetectionFilter) (hunt.DetectionFilter, error) {
	var out hunt.DetectionFilter
	if f == nil {
		return out, nil
	}
	if f.FromUs != 0 {
		out.From = time.UnixMicro(f.FromUs).UTC()
	}
	if f.ToUs != 0 {
		out.To = time.UnixMicro(f.ToUs).UTC()
	}
	out.Types = f.Types
	if f.MinSeverity < 0 || f.MinSeverity > ndrv1.Severity_SEVERITY_CRITICAL {
		return out, fmt.Errorf("%w: min_severity %d", hunt.ErrUsage, f.MinSeverity)
	}
	out.MinSeverity = features.Severity(f.MinSeverity)
	if len(f.Host) > 0 {
		a, ok := netip.AddrFromSlice(f.Host)
		if !ok {
			return out, fmt.Errorf("%w: host: want 4 or 16 bytes, got %d", hunt.ErrUsage, len(f.Host))
		}
		out.Host = a.Unmap()
	}
	if err := out.Validate(); err != nil {
		return out, err
	}
	return out, nil
}
