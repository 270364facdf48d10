package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vallum/vallum/bridge"
)

func newDoctorCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "doctor",
		Short: "Check kernel support, the sets, the firewall rules and the broker, and say what is missing",
		Args:  cobra.NoArgs,
		RunE:  doctorCmd,
	}
	connFlags(c.Flags())
	daemonFlags(c.Flags())
	return c
}

// finding is one line of the doctor's report.
type finding struct {
	ok   bool
	what string
	fix  string // what to do when not ok
}

func doctorCmd(cmd *cobra.Command, _ []string) error {
	c, log, err := setup(cmd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	var fs []finding
	fs = append(fs, checkModules(c.Backend)...)
	lists, err := c.lists()
	if err != nil {
		fs = append(fs, finding{false, "list topics", err.Error()})
	}
	be, err := newBackend(c, log)
	if err != nil {
		fs = append(fs, finding{false, "kernel backend " + c.Backend, err.Error()})
	} else {
		defer be.Close()
		fs = append(fs, checkSets(ctx, be, lists)...)
		fs = append(fs, checkRules(c.Backend, lists)...)
	}
	fs = append(fs, checkBroker(c))
	if report(cmd.OutOrStdout(), fs) {
		return nil
	}
	return errSilent
}

// report prints the findings and says whether all were fine.
func report(w io.Writer, fs []finding) bool {
	all := true
	for _, f := range fs {
		mark := "ok  "
		if !f.ok {
			mark, all = "FAIL", false
		}
		fmt.Fprintf(w, "%s %s\n", mark, f.what)
		if !f.ok && f.fix != "" {
			fmt.Fprintf(w, "     %s\n", f.fix)
		}
	}
	return all
}

// checkModules looks for the kernel support the backend needs.
func checkModules(backend string) []finding {
	mods := map[string][]string{"ipset": {"ip_set"}, "nft": {"nf_tables"}}[backend] // set types load on demand
	var fs []finding
	for _, m := range mods {
		_, err := os.Stat("/sys/module/" + m)
		fs = append(fs, finding{err == nil, "kernel module " + m, "load it: modprobe " + m + " (on OpenWrt: opkg install kmod-" + strings.ReplaceAll(m, "_", "-") + ")"})
	}
	return fs
}

func checkSets(ctx context.Context, be backend, lists []bridge.List) []finding {
	var fs []finding
	for _, l := range lists {
		for _, s := range []bridge.SetSpec{{Name: l.Set4, Family: bridge.IPv4}, {Name: l.Set6, Family: bridge.IPv6}} {
			info, err := be.Ensure(ctx, s) // Create is false: only checks
			switch {
			case errors.Is(err, bridge.ErrNoSet):
				fs = append(fs, finding{false, "set " + s.Name, "missing: vallum creates it at start unless --no-create; or create it (ipset create " + s.Name + " hash:net family " + s.Family.String() + " timeout 0 comment maxelem 4194304)"})
			case err != nil:
				fs = append(fs, finding{false, "set " + s.Name, err.Error()})
			default:
				size := fmt.Sprintf("%d entries", info.Size)
				if info.Size < 0 {
					size = "size not counted"
				}
				fs = append(fs, finding{true, fmt.Sprintf("set %s: %s %s, %s, capacity %d, comments %v", s.Name, info.Type, info.Family, size, info.MaxElem, info.Comments), ""})
			}
		}
	}
	return fs
}

// rulesUsing says, for each set, whether a rule of the dump uses it, and
// how to add one: iptables for an IPv4 set, ip6tables for an IPv6 one.
func rulesUsing(backend string, lists []bridge.List, all string) []finding {
	var fs []finding
	for _, l := range lists {
		for _, s := range []struct{ name, tool string }{{l.Set4, "iptables"}, {l.Set6, "ip6tables"}} {
			used := strings.Contains(all, "--match-set "+s.name+" ") || strings.Contains(all, "@"+s.name+" ") ||
				strings.Contains(all, "@"+s.name+"\n") || strings.Contains(all, "@"+s.name+"_net")
			fix := "no rule uses it: add one, e.g. " + s.tool + " -I INPUT -m set --match-set " + s.name + " src -j DROP (contrib/firewall)"
			if backend == "nft" {
				fix = "no rule uses it: run vallum with --nft-rules, or see contrib/firewall/vallum.nft"
			}
			fs = append(fs, finding{used, "a firewall rule drops members of " + s.name, fix})
		}
	}
	return fs
}

func checkBroker(c config) finding {
	what := "broker 127.0.0.1:1883 (embedded)"
	if !c.embedded() {
		what, _ = c.brokerURL()
		what = "broker " + what
	}
	cl, err := c.dial("doctor")
	if err != nil {
		fix := err.Error()
		if c.embedded() {
			fix += " (is the vallum daemon with its embedded broker running?)"
		}
		return finding{false, what + ": connect and log in", fix}
	}
	cl.Disconnect(100)
	return finding{true, what + ": connect and log in", ""}
}
