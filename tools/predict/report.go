package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// report is the benchmark's outcome, written as Markdown and JSON.
type report struct {
	Command    string     `json:"command"`
	Date       string     `json:"date"`
	Lodestar   string     `json:"lodestar"`
	Revision   string     `json:"revision"`
	RunSeconds float64    `json:"run_seconds"`
	DataSets   []*DataSet `json:"data_sets"`
}

// DataSet is one data set's figures.
type DataSet struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Counts are named counts, in order: accounts, scored, events sent...
	Counts []Count      `json:"counts"`
	Rows   []Row        `json:"rows"`
	Scores Distribution `json:"scores"`
	// Measures summarise the default scorecard's measures over the scored
	// accounts.
	Measures     []MeasureSummary `json:"measures"`
	Coefficients []Coefficient    `json:"learned_coefficients,omitempty"`
	// Alerts is the alert rules' quality on the data set's outcomes.
	Alerts *AlertQuality `json:"alerts,omitempty"`
	Notes  []string      `json:"notes,omitempty"`
}

// Count is one named count.
type Count struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

func (d *DataSet) count(name string, v float64) { d.Counts = append(d.Counts, Count{name, v}) }

func (d *DataSet) note(format string, args ...any) {
	d.Notes = append(d.Notes, fmt.Sprintf(format, args...))
}

func (r *report) write(mdPath, jsonPath string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(mdPath, r.markdown(), 0o644)
}

func (r *report) markdown() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Predictive benchmark\n\n")
	fmt.Fprintf(&b, "How well health scores rank the accounts that leave: ROC AUC (the chance that a random churner ranks above a random stayer, ties half; 0.5 is chance), beside single signals computed in the same run. Written by `tools/predict` (`make bench-predict`); the JSON twin is `predict.json`.\n\n")
	fmt.Fprintf(&b, "- Command: `%s`\n- Date: %s\n- Lodestar: `%s` at %s, `-target=all`, no configuration (the default scorecard)\n- Run time: %.0f s\n", r.Command, r.Date, r.Lodestar, r.Revision, r.RunSeconds)
	for _, d := range r.DataSets {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n", d.Name, d.Description)
		for _, c := range d.Counts {
			fmt.Fprintf(&b, "- %s: %s\n", c.Name, trim(c.Value))
		}
		fmt.Fprintf(&b, "\n| signal | population | AUC | n | positives |\n|---|---|---:|---:|---:|\n")
		for _, row := range d.Rows {
			auc := "n/a"
			if row.AUC != nil {
				auc = fmt.Sprintf("%.3f", *row.AUC)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %d | %d |\n", row.Signal, row.Population, auc, row.N, row.Positives)
		}
		s := d.Scores
		fmt.Fprintf(&b, "\nScores: %d scored, %d distinct values; red %.1f%%, yellow %.1f%%, green %.1f%%; min %s, p10 %s, median %s, p90 %s, max %s.\n",
			s.Scored, s.Distinct, 100*s.Red, 100*s.Yellow, 100*s.Green,
			trim(s.Quantiles[0]), trim(s.Quantiles[1]), trim(s.Quantiles[2]), trim(s.Quantiles[3]), trim(s.Quantiles[4]))
		if len(d.Measures) > 0 {
			fmt.Fprintf(&b, "\nMeasures of the scored accounts:\n\n| measure | with data | distinct sub-scores | mean sub-score | raw min | raw max |\n|---|---:|---:|---:|---:|---:|\n")
			for _, m := range d.Measures {
				fmt.Fprintf(&b, "| %s | %d | %d | %.1f | %s | %s |\n", m.Measure, m.WithData, m.Distinct, m.MeanSub, trim(m.MinRaw), trim(m.MaxRaw))
			}
		}
		if len(d.Coefficients) > 0 {
			fmt.Fprintf(&b, "\nLearned scorecard (log-odds of churn; a missing sub-score taken at its mean):\n\n| measure | per SD | per sub-score point | mean sub-score |\n|---|---:|---:|---:|\n")
			for _, c := range d.Coefficients {
				fmt.Fprintf(&b, "| %s | %+.3f | %+.4f | %.1f |\n", c.Measure, c.PerSD, c.PerPoint, c.Mean)
			}
		}
		if a := d.Alerts; a != nil {
			fmt.Fprintf(&b, "\n### Alert rules on the outcomes\n\n%s\n\n| rule set | rule | alerts | alerts/CSM/week | precision | recall | lift | median lead (days) |\n|---|---|---:|---:|---:|---:|---:|---:|\n", a.Description)
			for _, r := range a.Rows {
				fmt.Fprintf(&b, "| %s | %s | %d | %.2f | %.2f | %.2f | %.2f | %.0f |\n", r.Set, r.Rule, r.Alerts, r.AlertsPerCSMWeek, r.Precision, r.Recall, r.Lift, r.MedianLeadDays)
			}
			b.WriteString("\n")
			for _, s := range a.After {
				fmt.Fprintf(&b, "- %s.\n", s)
			}
		}
		if len(d.Notes) > 0 {
			b.WriteString("\n")
			for _, n := range d.Notes {
				fmt.Fprintf(&b, "- %s\n", n)
			}
		}
	}
	return b.Bytes()
}

// trim formats v with at most two decimals and no trailing zeros.
func trim(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
