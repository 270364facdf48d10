// Package feed reads public blocklists (FireHOL netsets, plain lists,
// Spamhaus DROP JSON, the Turris DynFW greylist CSV) into prefixes, and
// works out what an import must ban and unban. It reads line by line with
// a bound on each line, so no input can make it hold more than one line
// and the prefixes it keeps; a line it cannot read is refused alone, with
// its number, and the other lines still count.
package feed

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/vallum/vallum/internal/wire"
)

// Format is a feed's format.
type Format string

// The formats read. Auto picks one from the first line that is not blank
// nor a comment.
const (
	Auto     Format = "auto"
	Plain    Format = "plain"         // the first field of each line; # and ; start comments
	Netset   Format = "netset"        // FireHOL: # comment lines, one ADDRESS[/PREFIX] a line
	Spamhaus Format = "spamhaus-json" // drop_v4.json, drop_v6.json: one JSON object a line
	DynFW    Format = "dynfw-csv"     // Turris greylist: # comments, header "Address,...", address first
)

// Formats are the formats a user may name, Auto first.
var Formats = []Format{Auto, Plain, Netset, Spamhaus, DynFW}

// Limits of what a feed may hold.
const (
	MaxLine    = 4096      // bytes in one line; a longer line is refused
	MaxEntries = 5_000_000 // prefixes in one feed: 160 MB of netip.Prefix (tests lower maxEntries)
)

var maxEntries = MaxEntries

// Errors a Parse returns (wrapped). A refused line is not one of them: it
// is in Result.Refused.
var (
	ErrTooMany    = errors.New("feed has too many entries")
	ErrTruncated  = errors.New("feed is incomplete")
	ErrUnknownFmt = errors.New("unknown feed format")
)

// Result is what a feed holds.
type Result struct {
	Format   Format            // the format read (what Auto chose)
	Prefixes []netip.Prefix    // canonical (wire.ParsePrefix), in feed order, without repeats
	Lines    []int             // the line of each of Prefixes, for reports
	Refused  []*wire.LineError // lines that hold no prefix, in order
	Repeats  int               // entries that were already in the feed (also after canonicalising)
}

// Parse reads a whole feed. The error is for the feed as a whole (a read
// error, an unknown format, too many entries, a Spamhaus file cut short);
// a line that does not parse is refused alone.
func Parse(r io.Reader, f Format) (Result, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if f == Auto || f == "" {
		var err error
		if f, err = detect(br); err != nil {
			return Result{}, err
		}
	}
	p := &parser{res: Result{Format: f}, seen: map[netip.Prefix]struct{}{}}
	switch f {
	case Plain:
		p.line = p.plain
	case Netset:
		p.line = p.netset
	case Spamhaus:
		p.line = p.spamhaus
	case DynFW:
		p.line = p.dynfw
	default:
		return Result{}, fmt.Errorf("%w %q: want one of %v", ErrUnknownFmt, f, Formats)
	}
	if err := p.run(br); err != nil {
		return p.res, err
	}
	return p.res, p.finish()
}

type parser struct {
	res  Result
	seen map[netip.Prefix]struct{}
	line func(text []byte) error // one line, trimmed, not blank

	n        int  // the current line's number
	header   bool // dynfw: the header was read
	records  int  // spamhaus: lines with a cidr
	metadata *spamhausMeta
}

// run feeds each line to p.line. A line over MaxLine is refused and
// skipped to its end without being kept.
func (p *parser) run(br *bufio.Reader) error {
	for {
		p.n++
		text, long, err := readLine(br)
		if long {
			p.records, p.metadata = p.records+1, nil // spamhaus: a line, and not the metadata
			p.refuse(text, fmt.Errorf("%w: line longer than %d bytes", wire.ErrBadPayload, MaxLine))
		} else if t := bytes.TrimSpace(text); len(t) > 0 {
			if lerr := p.line(t); lerr != nil {
				p.refuse(t, lerr)
			}
		}
		if len(p.res.Prefixes) > maxEntries {
			return fmt.Errorf("%w: more than %d", ErrTooMany, maxEntries)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read feed, line %d: %w", p.n, err)
		}
	}
}

// readLine returns the next line without its newline. long: the line was
// over MaxLine; text is then its first bytes only, and the rest was read
// and dropped. err is io.EOF after the last line.
func readLine(br *bufio.Reader) (text []byte, long bool, err error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) <= MaxLine+1 { // +1: the newline
			buf = append(buf, chunk...)
		} else {
			long = true
			if len(buf) < 64 {
				buf = append(buf, chunk[:min(len(chunk), 64)]...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return bytes.TrimSuffix(buf, []byte{'\n'}), long, err
	}
}

func (p *parser) refuse(text []byte, err error) {
	p.res.Refused = append(p.res.Refused, &wire.LineError{N: p.n, Text: wire.Clip(string(text)), Err: err})
}

// add keeps one prefix, once.
func (p *parser) add(s []byte) error {
	pre, err := wire.ParsePrefix(string(s))
	if err != nil {
		return err
	}
	if _, dup := p.seen[pre]; dup {
		p.res.Repeats++
		return nil
	}
	p.seen[pre] = struct{}{}
	p.res.Prefixes = append(p.res.Prefixes, pre)
	p.res.Lines = append(p.res.Lines, p.n)
	return nil
}

// finish checks what only the whole feed can tell.
func (p *parser) finish() error {
	if p.res.Format != Spamhaus {
		return nil
	}
	// A download cut short must not pass for a smaller feed: an import
	// with --sync would unban what it lost.
	if p.metadata == nil {
		return fmt.Errorf("%w: no final {\"type\":\"metadata\"} line (download cut short?)", ErrTruncated)
	}
	if p.metadata.Records != nil && *p.metadata.Records != p.records {
		return fmt.Errorf("%w: the metadata line says %d records, the file has %d", ErrTruncated, *p.metadata.Records, p.records)
	}
	return nil
}

// detect looks at the first line that is not blank nor a comment, and
// leaves the reader where it was.
func detect(br *bufio.Reader) (Format, error) {
	for size := 4096; ; size *= 4 {
		head, err := br.Peek(size)
		for _, line := range bytes.Split(head, []byte{'\n'}) {
			t := bytes.TrimSpace(line)
			if len(t) == 0 || t[0] == '#' || t[0] == ';' {
				continue
			}
			switch {
			case t[0] == '{':
				return Spamhaus, nil
			case bytes.IndexByte(t, ',') >= 0:
				return DynFW, nil
			}
			return Plain, nil
		}
		if err != nil || size >= 1<<20 { // end of feed, or 1 MiB of comments
			return Plain, nil
		}
	}
}

// plain: the first field of the line; what follows # or ; is a comment,
// so `1.10.16.0/20 ; SBL256894` (the old Spamhaus drop.txt) and `vallum
// list -o plain` both read.
func (p *parser) plain(t []byte) error {
	if i := bytes.IndexAny(t, "#;"); i >= 0 {
		t = t[:i]
	}
	f := bytes.Fields(t)
	if len(f) == 0 {
		return nil
	}
	return p.add(f[0])
}

// netset: FireHOL's .netset and .ipset files: lines starting with # are
// comments, every other line is exactly one ADDRESS[/PREFIX].
func (p *parser) netset(t []byte) error {
	if t[0] == '#' {
		return nil
	}
	if bytes.ContainsAny(t, " \t") {
		return fmt.Errorf("%w: want one ADDRESS[/PREFIX] a line", wire.ErrBadPayload)
	}
	return p.add(t)
}

// spamhausLine is one line of drop_v4.json / drop_v6.json:
// {"cidr":"1.10.16.0/20","sblid":"SBL256894","rir":"apnic"}, and last
// {"type":"metadata","timestamp":...,"size":...,"records":N,...}.
type spamhausLine struct {
	CIDR    *string `json:"cidr"`
	Type    string  `json:"type"`
	Records *int    `json:"records"`
}

type spamhausMeta struct{ Records *int }

func (p *parser) spamhaus(t []byte) error {
	var l spamhausLine
	err := json.Unmarshal(t, &l)
	if err == nil && l.Type == "metadata" {
		p.metadata = &spamhausMeta{Records: l.Records}
		return nil
	}
	// Any other line is a record, refused or not, and means the metadata
	// read before was not the last line.
	after := p.metadata != nil
	p.records, p.metadata = p.records+1, nil
	switch {
	case err != nil:
		return fmt.Errorf("%w: not a JSON object: %v", wire.ErrBadPayload, err)
	case l.CIDR == nil:
		return fmt.Errorf("%w: no \"cidr\"", wire.ErrBadPayload)
	case after:
		return fmt.Errorf("%w: an entry after the metadata line", wire.ErrBadPayload)
	}
	return p.add([]byte(*l.CIDR))
}

// dynfw: the Turris Sentinel greylist
// (view.sentinel.turris.cz/greylist-data/greylist-latest.csv): comment
// lines starting with #, a header line whose first column is "Address",
// then one address a line in the first column; the other columns (tags)
// are not read. A quoted first column is unquoted.
func (p *parser) dynfw(t []byte) error {
	if t[0] == '#' {
		return nil
	}
	first, _, _ := bytes.Cut(t, []byte{','})
	first = bytes.TrimSpace(first)
	if len(first) >= 2 && first[0] == '"' && first[len(first)-1] == '"' {
		first = first[1 : len(first)-1]
	}
	if !p.header && bytes.EqualFold(first, []byte("address")) {
		p.header = true
		return nil
	}
	return p.add(first)
}
