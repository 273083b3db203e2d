// Package baseline is the per-host statistical memory of ndr: it learns
// what each internal host normally does, hour by hour, so that Layer 1's
// spike signals and Layer 2's scorers can ask "is this unusual for this
// host, at this hour?" instead of comparing every host with one fixed
// prior.
//
// It sits beside the pipeline, not in it: `ndr retrain` (and `ndr serve
// --retrain-every`) reads host-hour aggregates that ClickHouse computes
// (ndr.host_hour, ndr.dst_prevalence; migration 0004), fits models here
// with gonum, and stores an immutable, versioned Snapshot in
// ndr.baselines. Serving processes hold the current Snapshot in a Registry
// (an atomic pointer, swapped when a new version appears) and query it on
// the hot path without locks or allocation. `ndr replay` runs the same fit
// in event time over the connections it has seen so far (Learner), so a
// replayed week learns from its first days. baseline imports ingest and
// features; scoring imports baseline; gonum is used here and in scoring
// only.
//
// # What is modelled
//
// For every internal host and every Metric (connections, bytes sent to
// external destinations, distinct external destinations, distinct internal
// destinations i.e. fan-out, admin-port connections), the hourly totals of
// the data window, with hours without traffic counted as zeros from the
// host's first active hour on. Plus, per host, the admin ports it used; and
// per external destination, how many internal hosts contacted it and when
// it was first seen (prevalence, as RITA's modifiers use it).
//
// # The model of one host and metric (a hurdle model on the log scale)
//
// Traffic is intermittent: a workstation is idle at night, so most of its
// hours are zero and a median over all hours is 0 with MAD 0. Each metric
// is therefore two parts:
//
//   - activity p: the probability that the hour is non-zero;
//   - the size of an active hour: y = log1p(x), robust location (median)
//     and scale (1.4826 x MAD, which equals sd for normal data), fitted on
//     the active hours only. The log scale is what bytes need (notes:
//     "log scale for bytes"); log1p keeps small counts finite.
//
// Seasonality (Microsoft Sentinel decomposes 14 days of hourly bytes into
// seasonal and trend parts): once a host has Params.HourOfDayAfter of
// history (7 days: every hour of the day seen 7 times), hour-of-day
// offsets are fitted as medians of the residuals per hour of day (one
// step of Tukey's median polish); once it has Params.WeekdayAfter (14
// days: every weekday twice), weekday offsets likewise on what remains.
// Each offset is shrunk towards 0 by c/(c+Params.CellPrior), c the
// observations in its cell. Location and scale are then refitted on the
// deseasonalised residuals. Activity gets hour-of-day and weekday rates
// the same way (shrunk towards the host's overall rate).
//
// Shrinkage (empirical Bayes, as in credibility theory): a host with few
// hours borrows from a prior: its peer group (the /24, or /64 for IPv6,
// when it holds Params.MinPeers fitted hosts) or else the population. The
// prior is the median, over hosts, of each parameter. With n active hours
// the host keeps weight w = n/(n+k):
//
//	location = w·location_host + (1-w)·location_prior   (scale alike)
//
// with Bühlmann's credibility constant k = EPV/VHM estimated per prior:
// the expected within-host variance (median scale²) over the variance of
// the hosts' locations, at most Params.ShrinkHours (24). Where hosts
// differ far more than one host's hours do, a host's own hours win after
// a few hours; where hosts are alike, a newcomer leans on its peers.
//
// The activity rate is shrunk the same way with n its history hours and
// k = Params.ActivityPriorHours (a Beta prior worth 6 hours). Priors are
// medians weighted by the hosts' active (or history) hours, so a host
// seen for one hour barely moves them.
//
// A host absent from the snapshot gets the prior itself (HostModel's ok
// is false).
//
// Scores: z = (log1p(x) - location_hw)/scale is the Iglewicz-Hoaglin
// modified z-score 0.6745(x - median)/MAD on the log scale (outlier over
// 3.5). TailProb is the hurdle model's upper tail p_hw · Q(z), Q the
// standard normal survival function. An absolute floor per metric
// (Params.Floors, Splunk UBA's "ratio and an absolute floor") makes any
// value at or below it unremarkable (TailProb 1), so a host that never
// sends anything does not alarm on a few megabytes.
//
// # Spike windows (features.Baselines)
//
// Layer 1's spike signals score a window (60 s of connections, 5 min of
// bytes) as z = (x - mean)/sd. SpikeBaselines derives them from the
// hourly model at the window's hour of week, for a window of length w and
// f = w/1h:
//
//	E_h = p · (exp(μ + σ²/2) - 1)                      hourly mean (lognormal on log1p)
//	V_h = p · (exp(2μ + 2σ²) - 2exp(μ + σ²/2) + 1) - E_h²   hourly variance
//	mean_w = f · E_h,   sd_w = sqrt(f · V_h)
//
// mean_w is the hourly rate spread evenly; sd_w treats an hour as 1/f
// independent windows (the variance of a sum of k iid parts is k times a
// part's), which is larger than f·sd_h and so errs towards fewer alarms.
// Then sd_w is raised so that mean_w + FloorZ·sd_w is at least the metric's
// spike floor (Params.SpikeFloors, per window: 20 connections, 50 MB, the
// reference prior's normal host), so a learnt baseline never makes a
// window below the floor anomalous at z_over = FloorZ.
//
// # Lifecycle and ownership
//
// Snapshots are immutable after Build or Decode and safe for concurrent
// use; slices returned by their methods are shared and must not be
// modified. A Builder, a Learner and a Poller each belong to one owner;
// the Registry is safe for concurrent use. Versions increase: the store
// hands out the next one (see Retrain); a Learner counts its own.
package baseline
