//go:build linux

package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func format(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// cell is "median (min–max)" of v, or "-" when there are none.
func cell(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf("%s (%s–%s)", format(median(v)), format(slices.Min(v)), format(slices.Max(v)))
}

func printTable(w io.Writer, r *results, o *options) {
	head := []string{"measurement", "unit"}
	for _, p := range r.paths {
		head = append(head, p.label+" median (min–max)")
	}
	for _, p := range r.paths[1:] {
		head = append(head, p.label+"/veth")
	}
	var rows [][]string
	for _, m := range r.rows {
		row := []string{m.name, m.unit}
		for k := range r.paths {
			row = append(row, cell(m.vals[k]))
		}
		for k := range r.paths[1:] {
			ratio := "-"
			if v, w := m.vals[0], m.vals[k+1]; m.unit != "%" && len(v) > 0 && len(w) > 0 && median(v) != 0 {
				ratio = fmt.Sprintf("%.2f", median(w)/median(v))
			}
			row = append(row, ratio)
		}
		rows = append(rows, row)
	}
	var notes []string
	if c, t := r.idx["underlay ceiling: raw socket, 1 thread, 1500 B"], r.idx["TCP 1 stream"]; c != nil && t != nil && len(t.vals[0]) > 0 {
		notes = append(notes, fmt.Sprintf("The underlay ceiling is what one thread sending 1500-byte IP packets through a raw socket, and doing nothing else, delivers from a to b: %.2f× veth TCP 1 stream. Every tunnelled packet takes that path, so no raw-socket tunnel carries more here.",
			median(c.vals[0])/median(t.vals[0])))
	}
	note := fmt.Sprintf("%d rounds of %v per path, proto %s; vif CPU is both vif processes, in cores, during the vif runs",
		o.rounds, o.dur, o.proto)
	if o.markdown {
		fmt.Fprintf(w, "| %s |\n", strings.Join(head, " | "))
		fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(head)))
		for _, row := range rows {
			fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
		}
		fmt.Fprintf(w, "\n%s.\n", note)
		for _, n := range notes {
			fmt.Fprintf(w, "\n%s\n", n)
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, row := range rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	fmt.Fprintln(w, note)
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
}
