//go:build !(vallum_small && (mips || mipsle))

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/vallum/vallum/bridge"
)

// checkRules looks for firewall rules that use the sets: without one, the
// sets are filled but nothing is dropped.
func checkRules(backend string, lists []bridge.List) []finding {
	var dump []string
	for _, c := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"nft", "list", "ruleset"}} {
		if out, err := output(c[0], c[1:]...); err == nil {
			dump = append(dump, string(out))
		}
	}
	if len(dump) == 0 {
		return []finding{{false, "firewall rules", "cannot read the rules: neither iptables-save nor nft is installed"}}
	}
	return rulesUsing(backend, lists, strings.Join(dump, "\n"))
}

// output runs a program found in PATH and returns what it printed, or an
// error when it is not installed or fails. os.StartProcess and not os/exec,
// which is 65 KB of a static router build for these three calls.
func output(name string, args ...string) ([]byte, error) {
	path, err := lookPath(name)
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		w.Close()
		return nil, err
	}
	defer null.Close()
	p, err := os.StartProcess(path, append([]string{name}, args...), &os.ProcAttr{Files: []*os.File{null, w, null}})
	w.Close()
	if err != nil {
		return nil, err
	}
	out, rerr := io.ReadAll(r)
	st, err := p.Wait()
	if err == nil && !st.Success() {
		err = fmt.Errorf("%s: %s", name, st)
	}
	return out, errors.Join(err, rerr)
}

// lookPath finds an executable file named name in PATH.
func lookPath(name string) (string, error) {
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in PATH", name)
}
