package quality

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
)

// Write prints the report as aligned text tables.
func (rep *Report) Write(w io.Writer) error {
	o := rep.Options.Corpus
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "corpus: seed %d, %d workstations x %d days from %s, %d connections, analysed in %s\n\n",
		o.Seed, rep.Hosts, rep.Days, o.Start.Format("2006-01-02"), rep.Conns, rep.Elapsed.Round(100*1e6))
	fmt.Fprintln(tw, "use case\tinstances\tdetected\trecall\tdetections\tTP\tFP\tprecision\t")
	for _, u := range rep.UseCases {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%d\t%d\t%s\t\n", u.Name, u.Instances, u.Detected, f3(u.Recall),
			u.Detections, u.TruePositives, u.FalsePositives, f3(u.Precision))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nfalse positives: %d of %d detections (%d on hosts with no attack) = %.2f per 1,000 hosts per day;\n"+
		"%d more detect attack traffic under another type than its label's\n",
		rep.FP, rep.Detections, rep.FPOnBenign, rep.FPPer1000Days, rep.CrossType)
	for _, u := range rep.UseCases {
		if len(u.Missed) > 0 {
			fmt.Fprintf(w, "missed %s: %v\n", u.Name, u.Missed)
		}
	}
	for _, d := range rep.FalsePositives[:min(len(rep.FalsePositives), 10)] {
		fmt.Fprintf(w, "  FP %s %s %s -> %v severity %s confidence %.2f\n", d.RuleID, d.Type, d.Src, d.Dsts[:min(len(d.Dsts), 3)], d.Severity, d.Confidence)
	}
	fmt.Fprintln(w, "\nbenign look-alikes (detections on their hosts):")
	for _, b := range rep.Benign {
		fmt.Fprintf(w, "  %-13s %2d instances, %d detections of their traffic\n", b.Scenario, b.Instances, b.Detections)
	}

	fmt.Fprintf(w, "\nbeacon ROC: ndr's score, highest per pair over the run (%d C2 pairs, %d other scored pairs)\n",
		rep.PositivePairs, rep.NegativePairs)
	writeROC(w, rep.ROC)
	fmt.Fprintf(w, "\nRITA v5's beacon score on the same data, last 24 hours (%d C2 pairs, %d other pairs)\n",
		rep.RITAPositivePairs, rep.RITANegativePairs)
	writeROC(w, rep.RITA)
	for _, p := range rep.ROC {
		if p.Threshold == rep.Options.RITAThreshold {
			fmt.Fprintf(w, "\ncomparison at %.2f: ndr TPR %s, %d FP pairs (%.2f per 1,000 hosts per day); RITA TPR %s, %d FP pairs (%.2f per 1,000 hosts per day)\n",
				p.Threshold, f3(p.TPR), p.FP, p.FPPer1000HostDays, f3(rep.RITARow.TPR), rep.RITARow.FP, rep.RITARow.FPPer1000HostDays)
		}
	}
	fmt.Fprintf(w, "\nbeacon tracker: %d pairs at the end, %.1f bytes per pair\n", rep.BeaconPairs, rep.BeaconBytesPerPair)
	return nil
}

func writeROC(w io.Writer, pts []ROCPoint) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "threshold\tTP\tFP\tTPR\tFPR\tFP/1k hosts/day\t")
	for _, p := range pts {
		fmt.Fprintf(tw, "%.2f\t%d\t%d\t%s\t%s\t%.2f\t\n", p.Threshold, p.TP, p.FP, f3(p.TPR), f4(p.FPR), p.FPPer1000HostDays)
	}
	tw.Flush()
}

func f3(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	return fmt.Sprintf("%.3f", x)
}

func f4(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	return fmt.Sprintf("%.4f", x)
}
