package main

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vallum/vallum/broker"
)

func newCheckConfigCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "check-config",
		Short: "Check the configuration and print it as vallum sees it (passwords hidden)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, log, err := setup(cmd)
			if err != nil {
				return err
			}
			bo, err := c.bridgeOptions(log)
			if c.embedded() {
				o, berr := c.brokerOptions(bo.Lists, log)
				if berr == nil {
					berr = broker.Check(o) // the users file, anonymous access, TLS files
				}
				err = errors.Join(err, berr)
			}
			printConfig(cmd.OutOrStdout(), c, bo.ClientID, strings.Join(bo.Brokers, ","))
			if err != nil {
				return fmt.Errorf("configuration is not valid:\n%w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "# configuration OK")
			return nil
		},
	}
	connFlags(c.Flags())
	daemonFlags(c.Flags())
	brokerFlags(c.Flags())
	return c
}

func printConfig(w io.Writer, c config, clientID, url string) {
	if c.Password != "" {
		c.Password = "(hidden)"
	}
	c.ClientID = clientID
	fmt.Fprintf(w, "# config file: %s\n", orFlags(c.file))
	if c.embedded() {
		fmt.Fprintln(w, "# broker: embedded")
	} else {
		fmt.Fprintf(w, "# broker: %s\n", url)
	}
	writeYAML(w, c)
}

// writeYAML prints c's fields as flat YAML, in declaration order. By hand
// rather than with yaml.Marshal: the config is flat, and the YAML encoder
// is 130 KB of a static router build.
func writeYAML(w io.Writer, c config) {
	v, t := reflect.ValueOf(c), reflect.TypeOf(c)
	for i := range t.NumField() {
		key := t.Field(i).Tag.Get("yaml")
		if key == "" {
			continue
		}
		switch f := v.Field(i); f.Kind() {
		case reflect.String:
			fmt.Fprintf(w, "%s: %s\n", key, yamlString(f.String()))
		case reflect.Slice:
			if f.Len() == 0 {
				fmt.Fprintf(w, "%s: []\n", key)
				continue
			}
			fmt.Fprintf(w, "%s:\n", key)
			for j := range f.Len() {
				fmt.Fprintf(w, "    - %s\n", yamlString(f.Index(j).String()))
			}
		default:
			fmt.Fprintf(w, "%s: %v\n", key, f.Interface())
		}
	}
}

// yamlString writes s plain when YAML reads it back as the same string,
// and double-quoted (JSON escapes, which YAML shares) otherwise.
func yamlString(s string) string {
	if plainYAML(s) && !yamlScalar[strings.ToLower(s)] && !strings.Contains(s+" ", ": ") {
		if _, err := strconv.ParseFloat(s, 64); err != nil {
			return s
		}
	}
	return strconv.Quote(s)
}

// plainYAML tells strings safe unquoted: no leading indicator, no ": " or
// " #", no trailing space. It matches what the regular expression
// ^[A-Za-z0-9_./][A-Za-z0-9_./@+=,:-]*( [A-Za-z0-9_./@+=,-]+)*$ does
// (TestPlainYAMLAsRegexp), written out: the router builds link no regexp
// package then (contrib/build-static.sh).
func plainYAML(s string) bool {
	if s == "" || strings.IndexByte("@+=,-:", s[0]) >= 0 {
		return false
	}
	for i, w := range strings.Split(s, " ") {
		if w == "" {
			return false
		}
		for j := range len(w) {
			if !plainByte(w[j], i == 0) {
				return false
			}
		}
	}
	return true
}

// plainByte: letters, digits and _./@+=,- (and : in the first word).
func plainByte(c byte, colon bool) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("_./@+=,-", c) >= 0 || colon && c == ':'
}

// yamlScalar are words YAML 1.1 readers take for booleans or null.
var yamlScalar = map[string]bool{"true": true, "false": true, "yes": true, "no": true, "on": true,
	"off": true, "y": true, "n": true, "null": true, "~": true}
