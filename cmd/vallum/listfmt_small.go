//go:build vallum_small

package main

import (
	"io"
	"time"

	"github.com/spf13/pflag"
)

// listFormatsBuilt: the 32-bit router builds have no -o, the table only
// (listfmt.go has the others). mips had 1.5 KB left: -o took it over 10
// MB. Every use is behind `if listFormatsBuilt`, so these stubs are never
// linked.
const listFormatsBuilt = false

func outputFlag(*pflag.FlagSet) {}

func checkListFormat(string) error { return nil }

func printList(io.Writer, string, []ban, time.Time) error { return nil }
