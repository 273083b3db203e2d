package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/internal/pipeline"
	"github.com/ndr-go/ndr/internal/store"
	"github.com/ndr-go/ndr/scoring"
)

// analysisFlags configure Layer 1 and Layer 2 for serve and replay.
type analysisFlags struct {
	featuresConfig string
	rules          string
	localNets      string
}

func (f *analysisFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.featuresConfig, "features-config", "", "JSON file of window and signal settings over the defaults (see features.Config)")
	fs.StringVar(&f.rules, "rules", "", "correlation rules: a JSON file or a directory of them; a rule_id replaces the built-in rule of that id")
	fs.StringVar(&f.localNets, "local-nets", "", "comma-separated internal networks (default: RFC 1918, 100.64/10, IPv6 ULA; Zeek's local_orig/local_resp win when present)")
}

func (f *analysisFlags) config() (pipeline.Config, error) {
	cfg := pipeline.Config{Features: features.DefaultConfig()}
	if f.featuresConfig != "" {
		file, err := os.Open(f.featuresConfig)
		if err != nil {
			return cfg, err
		}
		cfg.Features, err = features.LoadConfig(file)
		file.Close()
		if err != nil {
			return cfg, fmt.Errorf("%s: %w", f.featuresConfig, err)
		}
	}
	if f.localNets != "" {
		var nets []netip.Prefix
		for _, s := range strings.Split(f.localNets, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil {
				return cfg, usageErr("--local-nets: %v", err)
			}
			nets = append(nets, p.Masked())
		}
		cfg.Features.LocalNetworks = nets
		if err := cfg.Features.Validate(); err != nil {
			return cfg, err
		}
	}
	rules, err := scoring.DefaultRules()
	if err != nil {
		return cfg, err
	}
	if f.rules != "" {
		user, err := scoring.LoadRules(f.rules)
		if err != nil {
			return cfg, err
		}
		rules = scoring.Override(rules, user)
	}
	cfg.Rules = rules
	return cfg, nil
}

// detectionStore adapts the store's analysis writer to scoring.Sink.
func detectionStore(w *store.AnalysisWriter) scoring.Sink {
	return scoring.SinkFunc(func(ctx context.Context, ev scoring.Event) error {
		return w.AddDetection(ctx, ev.Detection)
	})
}
