// Package wire is vallum's wire contract: the topics of a list (events,
// retained state, sync markers), the payload grammar, the state format and
// the timeouts they carry. The broker, its keeper, the CLI and the bridge
// all read and write through it, so each rule is spelled once. It imports
// nothing of vallum.
package wire

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Errors of the wire grammar. A refused line or topic wraps one of them.
var (
	ErrBadTopic   = errors.New("bad topic")
	ErrBadPayload = errors.New("bad payload")
)

// Kind is what a topic under a list root carries.
type Kind uint8

// Topic kinds: ROOT and ROOT/add (events, add), ROOT/del (events, delete),
// ROOT/ban/PREFIX (retained state of one ban).
const (
	KindAdd Kind = iota + 1
	KindDel
	KindState
)

// Topic levels below a list root: ROOT/add, ROOT/del, ROOT/ban/PREFIX.
const (
	LevelAdd   = "add"
	LevelDel   = "del"
	LevelState = "ban"
)

// maxLine bounds one payload line: the longest valid line is an IPv6
// prefix and a timeout, well under 100 bytes.
const maxLine = 128

// BurstLines: an event message of at least this many lines is a burst (a
// feed's import). The list's keeper folds a burst's adds straight into its
// next cut, with no per-ban state each, and a host's sync gives them the
// time that cut takes: one number for both sides.
const BurstLines = 256

// Topic is a parsed message topic.
type Topic struct {
	Root   string
	Kind   Kind
	Prefix netip.Prefix // KindState only
}

// ParseTopic parses topic as a message topic under root.
func ParseTopic(root, topic string) (Topic, error) {
	t := Topic{Root: root}
	if topic == root {
		t.Kind = KindAdd
		return t, nil
	}
	rest, ok := strings.CutPrefix(topic, root+"/")
	if !ok {
		return t, fmt.Errorf("%w: %q is not under %q", ErrBadTopic, Clip(topic), root)
	}
	switch {
	case rest == LevelAdd:
		t.Kind = KindAdd
	case rest == LevelDel:
		t.Kind = KindDel
	case strings.HasPrefix(rest, LevelState+"/"):
		p, err := ParsePrefix(rest[len(LevelState)+1:])
		if err != nil {
			return t, fmt.Errorf("%w: %w", ErrBadTopic, err)
		}
		t.Kind, t.Prefix = KindState, p
	default:
		return t, fmt.Errorf("%w: unknown sub-topic %q of %q", ErrBadTopic, Clip(rest), root)
	}
	return t, nil
}

// StateTopic is the retained topic that holds the state of one ban.
func StateTopic(root string, p netip.Prefix) string {
	return root + "/" + LevelState + "/" + FormatPrefix(p)
}

// EventTopic is the vallumd-compatible event topic for an add (KindAdd)
// or a delete (KindDel).
func EventTopic(root string, k Kind) string {
	if k == KindDel {
		return root + "/" + LevelDel
	}
	return root + "/" + LevelAdd
}

// EventTopics are the topics that carry a list's events: the bare root
// (an add, as vallumd reads it), ROOT/add and ROOT/del.
func EventTopics(root string) []string {
	return []string{root, EventTopic(root, KindAdd), EventTopic(root, KindDel)}
}

// IsEventTopic reports whether topic is one of root's event topics.
func IsEventTopic(root, topic string) bool {
	rest, ok := strings.CutPrefix(topic, root)
	return ok && (rest == "" || rest == "/"+LevelAdd || rest == "/"+LevelDel)
}

// StateFilter is the filter that matches every retained state of a list.
func StateFilter(root string) string { return root + "/" + LevelState + "/#" }

// ValidRoot reports why root cannot name a list, or nil.
func ValidRoot(root string) error {
	switch {
	case root == "":
		return fmt.Errorf("%w: empty topic", ErrBadTopic)
	case strings.ContainsAny(root, "+#\x00"):
		return fmt.Errorf("%w: %q: wildcards and NUL are not allowed in a list topic", ErrBadTopic, root)
	case strings.HasPrefix(root, "/") || strings.HasSuffix(root, "/") || strings.Contains(root, "//"):
		return fmt.Errorf("%w: %q: empty topic level", ErrBadTopic, root)
	case strings.HasPrefix(root, "$"):
		return fmt.Errorf("%w: %q: topics starting with $ are reserved by the broker", ErrBadTopic, root)
	case len(root) > 200:
		return fmt.Errorf("%w: topic longer than 200 bytes", ErrBadTopic)
	}
	last := root[strings.LastIndexByte(root, '/')+1:]
	if last == LevelAdd || last == LevelDel || last == LevelState {
		return fmt.Errorf("%w: %q: a list topic cannot end in /%s", ErrBadTopic, root, last)
	}
	return nil
}

// ParsePrefix parses ADDRESS[/BITS] strictly: no zones, ports, hostnames or
// leading zeros. A v4-mapped IPv6 address or prefix becomes IPv4, and host
// bits are masked off, as the kernel would.
func ParsePrefix(s string) (netip.Prefix, error) {
	addr, bitsText, hasBits := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: %q is not an IP address", ErrBadPayload, Clip(s))
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%w: %q: zones are not allowed", ErrBadPayload, Clip(s))
	}
	bits := a.BitLen()
	if hasBits {
		bits, err = strconv.Atoi(bitsText)
		if err != nil || bitsText == "" || bitsText[0] == '+' || bitsText[0] == '-' ||
			(len(bitsText) > 1 && bitsText[0] == '0') || bits > a.BitLen() {
			return netip.Prefix{}, fmt.Errorf("%w: %q: bad prefix length", ErrBadPayload, Clip(s))
		}
	}
	if a.Is4In6() {
		if bits < 96 {
			return netip.Prefix{}, fmt.Errorf("%w: %q: v4-mapped prefix shorter than /96", ErrBadPayload, Clip(s))
		}
		a, bits = a.Unmap(), bits-96
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// FormatPrefix writes p as the grammar reads it: a single address without
// its /32 or /128, a network with its length.
func FormatPrefix(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// Line is one parsed payload line: `ADDRESS[/PREFIX] [timeout SECONDS]`.
type Line struct {
	Prefix  netip.Prefix
	Timeout Timeout
}

// LineError is a refused payload line.
type LineError struct {
	N    int // 1-based line number
	Text string
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d %q: %v", e.N, e.Text, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// ParsePayload parses an event payload. Every line is parsed on its own: a
// line that does not parse is returned as a *LineError and the others are
// still returned. Blank lines, surrounding white space and meta lines
// (meta.go) are ignored.
func ParsePayload(b []byte) ([]Line, []error) {
	var lines []Line
	var errs []error
	for n := 1; len(b) > 0; n++ {
		var raw []byte
		raw, b, _ = bytes.Cut(b, []byte{'\n'})
		text := bytes.TrimSpace(raw)
		if len(text) == 0 || isMeta(text) {
			continue
		}
		l, err := parseLine(text)
		if err != nil {
			errs = append(errs, &LineError{N: n, Text: Clip(string(text)), Err: err})
			continue
		}
		lines = append(lines, l)
	}
	return lines, errs
}

func parseLine(text []byte) (Line, error) {
	if len(text) > maxLine {
		return Line{}, fmt.Errorf("%w: line longer than %d bytes", ErrBadPayload, maxLine)
	}
	f := strings.Fields(string(text))
	p, err := ParsePrefix(f[0])
	if err != nil {
		return Line{}, err
	}
	l := Line{Prefix: p, Timeout: DefaultTimeout}
	switch {
	case len(f) == 1:
	case len(f) == 3 && f[1] == "timeout":
		if l.Timeout, err = ParseSeconds(f[2]); err != nil {
			return Line{}, err
		}
	default:
		return Line{}, fmt.Errorf("%w: expected ADDRESS[/PREFIX] [timeout SECONDS]", ErrBadPayload)
	}
	return l, nil
}

// ParseSeconds parses a timeout in whole seconds: digits only, clamped to
// MaxTimeout, never negative.
func ParseSeconds(s string) (Timeout, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%w: timeout %q is not a whole number of seconds", ErrBadPayload, Clip(s))
	}
	n, err := strconv.ParseUint(s, 10, 63)
	if err != nil || n > uint64(MaxTimeout) { // only overflow fails here: clamp it too
		return MaxTimeout, nil
	}
	return Timeout(n), nil
}

// Clip bounds what a log line or error quotes of untrusted input, and
// replaces what is not printable (control bytes, invalid UTF-8) with '?',
// so that hostile payloads can neither flood nor forge log lines.
func Clip(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
}
