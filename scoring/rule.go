package scoring

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ndr-go/ndr/features"
)

// Errors of rule loading, wrapped with the file, rule and field.
var (
	// ErrRuleSyntax: a rules file is not JSON of the expected shape.
	ErrRuleSyntax = errors.New("scoring: rule syntax")
	// ErrRuleInvalid: a rule's field has a bad value, is missing or is
	// not a field of rules.
	ErrRuleInvalid = errors.New("scoring: invalid rule")
	// ErrNoRules: a rules path holds no rules.
	ErrNoRules = errors.New("scoring: no rules")
)

// Rule is one correlation rule: which signals about one entity, seen
// within a time window, make a detection, and what the detection says.
// Field names in JSON are the reference's (rule_id, required_signals,
// time_window_minutes, ...) plus ndr's suppression_window_minutes,
// allowlist, entity and min_signals.
type Rule struct {
	ID          string `json:"rule_id"`
	Name        string `json:"rule_name,omitempty"`
	Description string `json:"description,omitempty"`
	// RequiredSignals must all be present within the window for a full
	// match.
	RequiredSignals []features.SignalType `json:"required_signals"`
	// TimeWindowMinutes bounds the spread of the matched signals' event
	// times (their WindowEnd), as the reference's "time delta".
	TimeWindowMinutes int `json:"time_window_minutes"`
	// DetectionType names what a match means, e.g. LATERAL_MOVEMENT.
	DetectionType string            `json:"detection_type"`
	Severity      features.Severity `json:"severity"`
	// Confidence is the reference's qualitative rating of the rule:
	// LOW, MEDIUM or HIGH; it scales a detection's confidence.
	Confidence                  string   `json:"confidence,omitempty"`
	MITRE                       MITRE    `json:"mitre_attack"`
	RecommendedActions          []string `json:"recommended_actions,omitempty"`
	FalsePositiveConsiderations []string `json:"false_positive_considerations,omitempty"`
	// SuppressionWindowMinutes: further matches for the same rule and
	// entity within this time of a detection's creation update it
	// instead of creating another. Absent means 60.
	SuppressionWindowMinutes int `json:"suppression_window_minutes,omitempty"`
	// Allowlist names sources and destinations the rule never matches.
	Allowlist Allowlist `json:"allowlist,omitzero"`
	// Entity is what signals are correlated per: "src" (the internal
	// host, the default) or "pair" (host and destination address).
	Entity Entity `json:"entity,omitempty"`
	// MinSignals below len(RequiredSignals) allows partial matches, which
	// are reported at lower severity. Absent means all required.
	MinSignals int `json:"min_signals,omitempty"`
	// YieldTo names rules of the same entity whose detection takes
	// precedence: while one of them has an open detection for the entity
	// (within its suppression window), this rule does not report, so one
	// incident is not reported twice by overlapping rules (LM-002 yields to
	// LM-001). Unknown ids are ignored: an override may drop a rule.
	YieldTo []string `json:"yield_to,omitempty"`
}

// MITRE is a rule's ATT&CK mapping.
type MITRE struct {
	Tactic     string      `json:"tactic"`
	TacticName string      `json:"tactic_name,omitempty"`
	Techniques []Technique `json:"techniques"`
}

// Technique is an ATT&CK technique with the sub-techniques that apply.
type Technique struct {
	ID            string   `json:"id"`
	Name          string   `json:"name,omitempty"`
	SubTechniques []string `json:"sub_techniques,omitempty"`
}

// Allowlist entries are text as written in the rule; the Engine compiles
// them. CIDRs apply to the entity's source; Destinations to signal
// destinations and may carry a port: "198.51.100.7", "198.51.100.0/24",
// "198.51.100.7:443", "[2001:db8::1]:443", "[2001:db8::/32]:443".
type Allowlist struct {
	CIDRs        []string `json:"cidrs,omitempty"`
	Destinations []string `json:"destinations,omitempty"`
}

// Entity selects the correlation key.
type Entity string

// Entities.
const (
	EntitySrc  Entity = "src"
	EntityPair Entity = "pair"
)

// Defaults for absent fields.
const (
	DefaultSuppressionMinutes = 60
	DefaultRuleConfidence     = "HIGH"
)

// Bounds that keep a rule's state and timers sane.
const (
	maxWindowMinutes      = 24 * 60
	maxSuppressionMinutes = 7 * 24 * 60
)

// TimeWindowUS is the window in microseconds.
func (r *Rule) TimeWindowUS() int64 { return int64(r.TimeWindowMinutes) * 60e6 }

// SuppressionUS is the suppression window in microseconds, with the
// default applied.
func (r *Rule) SuppressionUS() int64 {
	m := r.SuppressionWindowMinutes
	if m == 0 {
		m = DefaultSuppressionMinutes
	}
	return int64(m) * 60e6
}

// minSignals is MinSignals with the default applied.
func (r *Rule) minSignals() int {
	if r.MinSignals == 0 {
		return len(r.RequiredSignals)
	}
	return r.MinSignals
}

// knownSignals are the signal types Layer 1 and Layer 2's scorers define. A rule requiring
// anything else could never match, so it is refused. Keep in step with
// features/signal.go.
func knownSignals() []features.SignalType {
	return []features.SignalType{
		features.PortScan, features.ConnectionSpike, features.PrivilegedAccess, features.HostSweep,
		features.FailedConnections, features.PeriodicBeacon, features.PersistentDestination,
		features.CommandExchange, features.DataStaging, features.OutboundSpike, features.DestinationDiversity,
		SignalBeaconScore, SignalUploadAnomaly, SignalStagingAnomaly, SignalMultiDstUpload,
	}
}

// problem is one thing wrong with a rule: the field and what.
type problem struct {
	field string
	err   error
}

// Validate reports every problem of the rule, each naming the rule and
// the field, joined.
func (r *Rule) Validate() error {
	var errs []error
	for _, p := range r.problems() {
		errs = append(errs, r.fieldErr(p.field, p.err))
	}
	return errors.Join(errs...)
}

func (r *Rule) problems() []problem {
	var ps []problem
	bad := func(field, format string, args ...any) {
		ps = append(ps, problem{field, fmt.Errorf("%w: %s", ErrRuleInvalid, fmt.Sprintf(format, args...))})
	}
	if !isRuleID(r.ID) {
		bad("rule_id", "%q is not 1-64 letters, digits, '.', '_' or '-'", r.ID)
	}
	if len(r.RequiredSignals) == 0 {
		bad("required_signals", "must name at least one signal")
	}
	seen := map[features.SignalType]bool{}
	for _, s := range r.RequiredSignals {
		if !slices.Contains(knownSignals(), s) {
			bad("required_signals", "unknown signal type %q", s)
		}
		if seen[s] {
			bad("required_signals", "%q is listed twice", s)
		}
		seen[s] = true
	}
	if r.TimeWindowMinutes < 1 || r.TimeWindowMinutes > maxWindowMinutes {
		bad("time_window_minutes", "%d is outside [1, %d]", r.TimeWindowMinutes, maxWindowMinutes)
	}
	if !isUpperSnake(r.DetectionType) {
		bad("detection_type", "%q is not an UPPER_SNAKE_CASE name", r.DetectionType)
	}
	if r.Severity < features.Low || r.Severity > features.Critical {
		bad("severity", "must be LOW, MEDIUM, HIGH or CRITICAL")
	}
	if _, ok := ruleConfidence(r.Confidence); !ok {
		bad("confidence", "%q is not LOW, MEDIUM or HIGH", r.Confidence)
	}
	if !isTactic(r.MITRE.Tactic) {
		bad("mitre_attack.tactic", "%q is not a tactic id like TA0008", r.MITRE.Tactic)
	}
	if len(r.MITRE.Techniques) == 0 {
		bad("mitre_attack.techniques", "must name at least one technique")
	}
	for i, t := range r.MITRE.Techniques {
		if !isTechnique(t.ID) {
			bad(fmt.Sprintf("mitre_attack.techniques[%d].id", i), "%q is not a technique id like T1021", t.ID)
		}
		for _, st := range t.SubTechniques {
			if !isTechnique(st) || !strings.HasPrefix(st, t.ID+".") {
				bad(fmt.Sprintf("mitre_attack.techniques[%d].sub_techniques", i), "%q is not a sub-technique of %s", st, t.ID)
			}
		}
	}
	for i, a := range r.RecommendedActions {
		if strings.TrimSpace(a) == "" {
			bad(fmt.Sprintf("recommended_actions[%d]", i), "is empty")
		}
	}
	if s := r.SuppressionWindowMinutes; s < 0 || s > maxSuppressionMinutes {
		bad("suppression_window_minutes", "%d is outside [1, %d]", s, maxSuppressionMinutes)
	}
	for i, c := range r.Allowlist.CIDRs {
		if _, err := parsePrefix(c); err != nil {
			bad(fmt.Sprintf("allowlist.cidrs[%d]", i), "%v", err)
		}
	}
	for i, d := range r.Allowlist.Destinations {
		if _, err := parseDest(d); err != nil {
			bad(fmt.Sprintf("allowlist.destinations[%d]", i), "%v", err)
		}
	}
	switch r.Entity {
	case "", EntitySrc, EntityPair:
	default:
		bad("entity", "%q is not src or pair", r.Entity)
	}
	if r.MinSignals < 0 || r.MinSignals > len(r.RequiredSignals) {
		bad("min_signals", "%d is outside [1, %d]", r.MinSignals, len(r.RequiredSignals))
	}
	for i, id := range r.YieldTo {
		if !isRuleID(id) || id == r.ID {
			bad(fmt.Sprintf("yield_to[%d]", i), "%q is not another rule's id", id)
		}
	}
	return ps
}

// isRuleID: 1-64 of letters, digits, '.', '_', '-', not starting with a
// punctuation mark.
func isRuleID(s string) bool {
	if len(s) == 0 || len(s) > 64 || !isAlnum(s[0]) {
		return false
	}
	for i := range len(s) {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// isUpperSnake: LATERAL_MOVEMENT, up to 64 characters.
func isUpperSnake(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := range len(s) {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}

// isTactic: TA and four digits.
func isTactic(s string) bool { return len(s) == 6 && s[:2] == "TA" && isDigits(s[2:]) }

// isTechnique: T and four digits, optionally . and three digits.
func isTechnique(s string) bool {
	id, sub, dotted := strings.Cut(s, ".")
	if len(id) != 5 || id[0] != 'T' || !isDigits(id[1:]) {
		return false
	}
	return !dotted || len(sub) == 3 && isDigits(sub)
}

func (r *Rule) fieldErr(field string, err error) error {
	id := r.ID
	if id == "" {
		id = "?"
	}
	return fmt.Errorf("rule %q: %s: %w", id, field, err)
}

// ruleConfidence maps the reference's rating to the factor it gives a
// detection's confidence.
func ruleConfidence(s string) (float64, bool) {
	switch strings.ToUpper(s) {
	case "", "HIGH":
		return 1, true
	case "MEDIUM":
		return 0.85, true
	case "LOW":
		return 0.7, true
	}
	return 0, false
}

// parsePrefix accepts a CIDR or a bare address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Is4In6() {
			// Signals carry unmapped IPv4, so ::ffff:10.0.0.0/104 must
			// mean 10.0.0.0/8.
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("%q: an IPv4-mapped prefix must be /96 or longer", s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("address %q has a zone", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// dest is a compiled allowlist destination: a prefix and an optional port.
type dest struct {
	p    netip.Prefix
	port uint16 // 0 = any
}

func parseDest(s string) (dest, error) {
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 || !strings.HasPrefix(s[end+1:], ":") {
			return dest{}, fmt.Errorf("%q: want [address]:port", s)
		}
		host, port = s[1:end], s[end+2:]
	case strings.Count(s, ":") == 1:
		host, port, _ = strings.Cut(s, ":")
	}
	p, err := parsePrefix(host)
	if err != nil {
		return dest{}, err
	}
	d := dest{p: p}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return dest{}, fmt.Errorf("%q: bad port", s)
		}
		d.port = uint16(n)
	}
	return d, nil
}

// ruleFields are the keys a rule object may have.
func ruleFields() []string {
	return []string{
		"rule_id", "rule_name", "description", "required_signals", "time_window_minutes",
		"detection_type", "severity", "confidence", "mitre_attack", "recommended_actions",
		"false_positive_considerations", "suppression_window_minutes", "allowlist", "entity", "min_signals", "yield_to",
	}
}

// ParseRules reads a rules file: one rule object, or an array of them.
// Loading is strict: unknown keys, values of the wrong type and invalid
// values are all reported, each with the file, the rule id and the field,
// joined. name is used in errors only.
func ParseRules(name string, data []byte) ([]Rule, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // editors on Windows add a BOM
	var raws []json.RawMessage
	trimmed := bytes.TrimSpace(data)
	switch {
	case len(trimmed) == 0:
		return nil, fmt.Errorf("%s: %w", name, ErrNoRules)
	case trimmed[0] == '[':
		if err := json.Unmarshal(trimmed, &raws); err != nil {
			return nil, fmt.Errorf("%s: %w: %v", name, ErrRuleSyntax, err)
		}
	default:
		raws = []json.RawMessage{trimmed}
	}
	var (
		rules []Rule
		errs  []error
	)
	for i, raw := range raws {
		r, err := parseRule(raw)
		if err != nil {
			where := name
			if len(raws) > 1 || trimmed[0] == '[' {
				where = fmt.Sprintf("%s: rule %d", name, i+1)
			}
			errs = append(errs, prefixErrs(where, err))
			continue
		}
		rules = append(rules, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("%s: %w", name, ErrNoRules)
	}
	if err := checkUnique(rules); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return rules, nil
}

// prefixErrs prefixes every error of a joined error.
func prefixErrs(prefix string, err error) error {
	var out []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, fmt.Errorf("%s: %w", prefix, e))
		}
		return errors.Join(out...)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// parseRule decodes one rule object field by field, so that every bad
// field is reported rather than the first.
func parseRule(raw json.RawMessage) (Rule, error) {
	var (
		r    Rule
		errs []error
	)
	failed := map[string]bool{}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		if err == nil {
			err = errors.New("null")
		}
		return r, fmt.Errorf("%w: not a JSON object: %v", ErrRuleSyntax, err)
	}
	// The id first: every other message names it.
	if v, ok := fields["rule_id"]; ok {
		if err := json.Unmarshal(v, &r.ID); err != nil {
			errs = append(errs, r.fieldErr("rule_id", fmt.Errorf("%w: %v", ErrRuleSyntax, err)))
			failed["rule_id"] = true
		}
	} else {
		errs = append(errs, r.fieldErr("rule_id", fmt.Errorf("%w: missing", ErrRuleInvalid)))
		failed["rule_id"] = true
	}
	decode := func(key string, dst any, strict bool) {
		v, ok := fields[key]
		if !ok {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(v))
		if strict {
			dec.DisallowUnknownFields()
		}
		if err := dec.Decode(dst); err != nil {
			errs = append(errs, r.fieldErr(key, fmt.Errorf("%w: %v", ErrRuleSyntax, err)))
			failed[key] = true
		} else if dec.More() {
			errs = append(errs, r.fieldErr(key, fmt.Errorf("%w: data after the value", ErrRuleSyntax)))
			failed[key] = true
		}
	}
	// exactKeys holds nested objects to the exact key spelling: Go's JSON
	// decoding matches struct fields case-insensitively, which would let
	// "TACTIC" through.
	exactKeys := func(key string, allowed []string, listKey string, listAllowed []string) {
		var obj map[string]json.RawMessage
		if v, ok := fields[key]; !ok || failed[key] || json.Unmarshal(v, &obj) != nil {
			return
		}
		check := func(where string, o map[string]json.RawMessage, allowed []string) {
			var bad []string
			for k := range o {
				if !slices.Contains(allowed, k) {
					bad = append(bad, k)
				}
			}
			slices.Sort(bad)
			for _, k := range bad {
				errs = append(errs, r.fieldErr(where, fmt.Errorf("%w: unknown field %q", ErrRuleInvalid, k)))
				failed[key] = true
			}
		}
		check(key, obj, allowed)
		var items []map[string]json.RawMessage
		if listKey != "" && json.Unmarshal(obj[listKey], &items) == nil {
			for i, it := range items {
				check(fmt.Sprintf("%s.%s[%d]", key, listKey, i), it, listAllowed)
			}
		}
	}
	decode("rule_name", &r.Name, false)
	decode("description", &r.Description, false)
	decode("required_signals", &r.RequiredSignals, false)
	decode("time_window_minutes", &r.TimeWindowMinutes, false)
	decode("detection_type", &r.DetectionType, false)
	decode("confidence", &r.Confidence, false)
	decode("mitre_attack", &r.MITRE, true)
	exactKeys("mitre_attack", []string{"tactic", "tactic_name", "techniques"}, "techniques", []string{"id", "name", "sub_techniques"})
	decode("recommended_actions", &r.RecommendedActions, false)
	decode("false_positive_considerations", &r.FalsePositiveConsiderations, false)
	decode("suppression_window_minutes", &r.SuppressionWindowMinutes, false)
	decode("allowlist", &r.Allowlist, true)
	exactKeys("allowlist", []string{"cidrs", "destinations"}, "", nil)
	decode("entity", &r.Entity, false)
	decode("min_signals", &r.MinSignals, false)
	decode("yield_to", &r.YieldTo, false)
	// Severity is read as text so that the message names the rule.
	var sev string
	decode("severity", &sev, false)
	if _, ok := fields["severity"]; ok && sev != "" {
		s, err := features.ParseSeverity(sev)
		if err != nil {
			errs = append(errs, r.fieldErr("severity", fmt.Errorf("%w: %q is not LOW, MEDIUM, HIGH or CRITICAL", ErrRuleInvalid, sev)))
			failed["severity"] = true
		}
		r.Severity = s
	}
	if v, ok := fields["suppression_window_minutes"]; ok && string(bytes.TrimSpace(v)) == "0" {
		errs = append(errs, r.fieldErr("suppression_window_minutes", fmt.Errorf("%w: 0; omit the field for the default of %d", ErrRuleInvalid, DefaultSuppressionMinutes)))
		failed["suppression_window_minutes"] = true
	}
	if v, ok := fields["min_signals"]; ok && string(bytes.TrimSpace(v)) == "0" {
		errs = append(errs, r.fieldErr("min_signals", fmt.Errorf("%w: 0; omit the field to require every signal", ErrRuleInvalid)))
		failed["min_signals"] = true
	}
	var unknown []string
	for k := range fields {
		if !slices.Contains(ruleFields(), k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		errs = append(errs, r.fieldErr(k, fmt.Errorf("%w: unknown field", ErrRuleInvalid)))
	}
	// Semantic problems, except for fields that already failed to decode
	// (their zero values would only repeat the complaint).
	for _, p := range r.problems() {
		top, _, _ := strings.Cut(p.field, ".")
		top, _, _ = strings.Cut(top, "[")
		if !failed[top] {
			errs = append(errs, r.fieldErr(p.field, p.err))
		}
	}
	return r, errors.Join(errs...)
}

func checkUnique(rules []Rule) error {
	seen := map[string]bool{}
	var errs []error
	for _, r := range rules {
		if seen[r.ID] {
			errs = append(errs, r.fieldErr("rule_id", fmt.Errorf("%w: defined more than once", ErrRuleInvalid)))
		}
		seen[r.ID] = true
	}
	return errors.Join(errs...)
}

// LoadRules reads a rules file, or every *.json file of a directory in
// name order (one rule or an array of rules each). Rule ids must be
// unique across the files.
func LoadRules(path string) ([]Rule, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	if !fi.IsDir() {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("load rules: %w", err)
		}
		return ParseRules(path, data)
	}
	return loadFS(os.DirFS(path), ".", path)
}

// rulesFS holds the default rules shipped in the binary.
//
//go:embed rules/*.json
var rulesFS embed.FS

// DefaultRules returns the rules shipped with ndr: LM-001, C2-BEACON-001
// and EXFIL-001 for the three use cases. Each call returns a fresh copy.
func DefaultRules() ([]Rule, error) { return loadFS(rulesFS, "rules", "rules") }

func loadFS(fsys fs.FS, dir, display string) ([]Rule, error) {
	names, err := fs.Glob(fsys, filepath.ToSlash(filepath.Join(dir, "*.json")))
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	slices.Sort(names)
	var (
		rules []Rule
		errs  []error
	)
	for _, n := range names {
		data, err := fs.ReadFile(fsys, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("load rules: %w", err))
			continue
		}
		rs, err := ParseRules(filepath.Join(display, filepath.Base(n)), data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rules = append(rules, rs...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("%s: %w: no *.json files", display, ErrNoRules)
	}
	if err := checkUnique(rules); err != nil {
		return nil, fmt.Errorf("%s: %w", display, err)
	}
	return rules, nil
}

// Override returns base with each rule of user replacing the base rule of
// the same id, and user's other rules appended: how an operator tunes a
// shipped rule without copying all of them.
func Override(base, user []Rule) []Rule {
	out := slices.Clone(base)
	for _, u := range user {
		if i := slices.IndexFunc(out, func(r Rule) bool { return r.ID == u.ID }); i >= 0 {
			out[i] = u
		} else {
			out = append(out, u)
		}
	}
	return out
}
