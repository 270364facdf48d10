//go:build !(vallum_small && (mips || mipsle))

package metrics

import (
	"fmt"
	"io"
)

// drops writes the counters of vallum's own drop rules.
func drops(w io.Writer, ds []Drop) {
	header(w, "vallum_dropped_packets_total", "Packets vallum's own drop rules dropped (from the list's members, and to them on forward with --kill-connections).")
	for _, d := range ds {
		fmt.Fprintf(w, "vallum_dropped_packets_total{list=%q,family=%q} %d\n", d.List, d.Family, d.Packets)
	}
	header(w, "vallum_dropped_bytes_total", "Bytes of those packets.")
	for _, d := range ds {
		fmt.Fprintf(w, "vallum_dropped_bytes_total{list=%q,family=%q} %d\n", d.List, d.Family, d.Bytes)
	}
}
