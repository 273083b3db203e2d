package scenario

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ErrUnknownPreset is returned by Preset for a name Presets does not list.
var ErrUnknownPreset = errors.New("scenario: unknown preset")

// Presets lists the preset names in the order a help text shows them.
func Presets() []string { return []string{"lateral", "c2", "exfil", "benign", "mixed"} }

// Preset returns a named Spec: one use case with its look-alikes over
// background traffic ("lateral", "c2", "exfil"), only look-alikes
// ("benign"), or everything ("mixed"). A zero start means
// 2026-02-06T10:00:00Z for the use cases and 00:00 that day for benign and
// mixed; a zero duration means 1 h for lateral and exfil, 2 h for c2 and
// 24 h for benign and mixed. Offsets scale with the duration, and daily
// jobs (backups, the admin round) are moved into runs shorter than a day so
// that every instance shows up.
func Preset(name string, seed uint64, start time.Time, d time.Duration) (Spec, error) {
	dayLong := name == "benign" || name == "mixed"
	if start.IsZero() {
		start = time.Date(2026, 2, 6, 10, 0, 0, 0, time.UTC)
		if dayLong {
			start = time.Date(2026, 2, 6, 0, 0, 0, 0, time.UTC)
		}
	}
	if d <= 0 {
		switch name {
		case "c2":
			d = 2 * time.Hour
		case "benign", "mixed":
			d = 24 * time.Hour
		default:
			d = time.Hour
		}
	}
	s := Spec{Seed: seed, Start: start, Duration: d, Sensor: "scenario", Background: DefaultBackground()}
	at := func(frac float64) time.Duration { return time.Duration(float64(d) * frac).Truncate(time.Second) }
	// timeOfDay places a daily job at frac of a short run, or keeps its
	// usual time when the run covers a day.
	timeOfDay := func(usual time.Duration, frac float64) time.Duration {
		if d >= 24*time.Hour {
			return usual
		}
		t := start.Add(at(frac)).UTC()
		return t.Sub(t.Truncate(24 * time.Hour))
	}
	lateral := func() Lateral {
		l := DefaultLateral()
		l.Offset = at(1.0 / 6)
		return l
	}
	c2 := func() Beacon {
		b := DefaultBeacon()
		b.Dst = netip.MustParseAddr("203.0.113.99") // the reference's C2 server
		b.Offset = at(1.0 / 12)
		return b
	}
	exfil := func() Exfil {
		x := DefaultExfil()
		x.Offset = at(0.25)
		return x
	}
	lowSlow := func() LowSlow {
		l := DefaultLowSlow()
		l.Offset = at(1.0 / 12)
		return l
	}
	admin := func() Admin {
		a := DefaultAdmin()
		a.Round = timeOfDay(a.Round, 1.0/3)
		return a
	}
	backups := func() []Backup {
		push := DefaultBackup()
		push.TimeOfDay = timeOfDay(push.TimeOfDay, 0.4)
		pull := DefaultBackup()
		pull.Clients = []netip.Addr{fileServer(2), fileServer(3)}
		pull.Port, pull.Pull = 445, true
		pull.TimeOfDay = timeOfDay(2*time.Hour, 0.6)
		return []Backup{push, pull}
	}
	cloud := func() CloudUpload {
		c := DefaultCloudUpload()
		c.Offset = at(0.5)
		return c
	}
	switch name {
	case "lateral":
		s.Lateral = []Lateral{lateral()}
		s.Admin = []Admin{admin()}
	case "c2":
		s.C2 = []Beacon{c2()}
		s.NTP = []NTP{DefaultNTP()}
		s.Updates = []UpdateCheck{DefaultUpdateCheck()}
	case "exfil":
		s.Exfil = []Exfil{exfil()}
		s.LowSlow = []LowSlow{lowSlow()}
		s.Backups = backups()
		s.CloudUploads = []CloudUpload{cloud()}
	case "benign":
		s.NTP = []NTP{DefaultNTP()}
		s.Updates = []UpdateCheck{DefaultUpdateCheck()}
		s.Backups = backups()
		s.Admin = []Admin{admin()}
		s.CloudUploads = []CloudUpload{cloud()}
	case "mixed":
		s.Lateral = []Lateral{lateral()}
		s.C2 = []Beacon{c2()}
		s.Exfil = []Exfil{exfil()}
		s.LowSlow = []LowSlow{lowSlow()}
		s.NTP = []NTP{DefaultNTP()}
		s.Updates = []UpdateCheck{DefaultUpdateCheck()}
		s.Backups = backups()
		s.Admin = []Admin{admin()}
		s.CloudUploads = []CloudUpload{cloud()}
	default:
		return Spec{}, fmt.Errorf("%w %q (have %v)", ErrUnknownPreset, name, Presets())
	}
	return s, nil
}
