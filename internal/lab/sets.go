package lab

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Member is one entry of a kernel set as the ipset or nft command shows it.
type Member struct {
	Prefix  string // 192.0.2.1 or 198.51.100.0/24, as the command prints it
	Timeout int    // seconds left; 0 for none
	Comment string
}

// Members lists an ipset with `ipset save`, as a user would see it. A
// missing set is an error.
func (h *Host) Members(set string) ([]Member, error) {
	out, err := h.Exec("ipset", "save", set)
	if err != nil {
		return nil, err
	}
	var ms []Member
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "add" {
			continue
		}
		m := Member{Prefix: f[2]}
		for i := 3; i+1 < len(f); i++ {
			switch f[i] {
			case "timeout":
				m.Timeout, _ = strconv.Atoi(f[i+1])
			case "comment":
				m.Comment = strings.Trim(f[i+1], `"`)
			}
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// Prefixes returns the sorted prefixes of an ipset.
func (h *Host) Prefixes(set string) ([]string, error) {
	ms, err := h.Members(set)
	if err != nil {
		return nil, err
	}
	p := make([]string, len(ms))
	for i, m := range ms {
		p[i] = m.Prefix
	}
	sort.Strings(p)
	return p, nil
}

// NftPrefixes returns the sorted elements of an nftables set, read with
// `nft -j list set FAMILY TABLE SET`; prefixes print as ADDR/LEN.
func (h *Host) NftPrefixes(family, table, set string) ([]string, error) {
	out, err := h.Exec("nft", "-j", "list", "set", family, table, set)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("nft -j: %w", err)
	}
	var p []string
	for _, obj := range doc.Nftables {
		raw, ok := obj["set"]
		if !ok {
			continue
		}
		var s struct {
			Elem []json.RawMessage `json:"elem"`
		}
		json.Unmarshal(raw, &s)
		for _, e := range s.Elem {
			p = append(p, nftElem(e))
		}
	}
	sort.Strings(p)
	return p, nil
}

// nftElem reads "1.2.3.4", {"prefix":{"addr":..,"len":..}} or
// {"elem":{"val":..., "timeout":...}}.
func nftElem(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o struct {
		Prefix *struct {
			Addr string `json:"addr"`
			Len  int    `json:"len"`
		} `json:"prefix"`
		Elem *struct {
			Val json.RawMessage `json:"val"`
		} `json:"elem"`
	}
	json.Unmarshal(raw, &o)
	switch {
	case o.Prefix != nil:
		return fmt.Sprintf("%s/%d", o.Prefix.Addr, o.Prefix.Len)
	case o.Elem != nil:
		return nftElem(o.Elem.Val)
	}
	return string(raw)
}

// NftMembers lists an nftables set with `nft -j`, with each element's
// seconds left (0 for none) and comment.
func (h *Host) NftMembers(family, table, set string) ([]Member, error) {
	out, err := h.Exec("nft", "-j", "list", "set", family, table, set)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("nft -j: %w", err)
	}
	var ms []Member
	for _, obj := range doc.Nftables {
		if obj.Set == nil {
			continue
		}
		for _, raw := range obj.Set.Elem {
			var o struct {
				Elem *struct {
					Expires int    `json:"expires"`
					Comment string `json:"comment"`
				} `json:"elem"`
			}
			json.Unmarshal(raw, &o)
			m := Member{Prefix: nftElem(raw)}
			if o.Elem != nil {
				m.Timeout, m.Comment = o.Elem.Expires, o.Elem.Comment
			}
			ms = append(ms, m)
		}
	}
	return ms, nil
}
