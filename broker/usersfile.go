package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"go.yaml.in/yaml/v3"
)

// SetUser adds u to the users file at path, creating the file when it is
// missing, or gives the user of that name u's password hash. It edits the
// text rather than re-encoding the YAML, so comments and the other users
// stay as written (and the YAML encoder stays out of router builds). The
// result must load as the broker loads it, or the file is left unchanged;
// it replaces the file atomically, keeping its mode and owner. It reports
// whether the user was added (true) or had its password changed.
func SetUser(path string, u User) (added bool, err error) {
	if err := checkUser(u); err != nil {
		return false, fmt.Errorf("user %q: %w", u.Name, err)
	}
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read users file: %w", err)
	}
	out, added, err := editUsers(path, old, u)
	if err != nil {
		return false, err
	}
	return added, writeAtomic(path, out)
}

// editUsers returns the users file old with u set, checked as the broker
// loads it: u has its hash, and no other user changed.
func editUsers(path string, old []byte, u User) ([]byte, bool, error) {
	out, added, err := setUserText(old, u)
	if err != nil {
		return nil, false, fmt.Errorf("users file %s: %w", path, err)
	}
	users, err := parseUsers(path, out)
	if err != nil {
		return nil, false, fmt.Errorf("users file %s left unchanged, the edit would not load: %w", path, err)
	}
	was, _ := parseUsers(path, old) // the users that loaded before, if any
	ok := users[u.Name].Password == u.Password
	for _, m := range [][2]map[string]User{{was, users}, {users, was}} { // none lost, none new
		for name, a := range m[0] {
			b, there := m[1][name]
			ok = ok && (name == u.Name || there && a.Password == b.Password && a.Role == b.Role)
		}
	}
	if !ok {
		return nil, false, fmt.Errorf("users file %s left unchanged: the edit did not take as it should; add this by hand:\n%s", path, userEntry(u, "  "))
	}
	return out, added, nil
}

// setUserText returns the users file text old with u added or its password
// set.
func setUserText(old []byte, u User) ([]byte, bool, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(old, &doc); err != nil {
		return nil, false, err
	}
	// The edits go by YAML's line numbers: only \n (or \r\n) may end a line.
	if strings.ContainsAny(strings.ReplaceAll(string(old), "\r\n", "\n"), "\r\u0085\u2028\u2029") {
		return nil, false, fmt.Errorf("it has line breaks other than \\n: add this entry by hand:\n%s", userEntry(u, "  "))
	}
	lines := strings.SplitAfter(string(old), "\n")
	if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n")) {
		lines[len(lines)-1] += "\n"
	}
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(doc.Content) > 0 && doc.Content[0].Kind != yaml.MappingNode {
		return nil, false, errors.New("not a YAML mapping with a users: key at the top")
	}
	seq := usersNode(&doc)
	if seq == nil { // no users key yet: a new file, or only comments
		return []byte(strings.Join(lines, "") + "users:\n" + userEntry(u, "  ")), true, nil
	}
	if seq.Kind != yaml.SequenceNode || len(seq.Content) == 0 {
		// users: (null) or users: []: the entries go on the next lines.
		comment := ""
		if seq.LineComment != "" {
			comment = " " + seq.LineComment
		}
		head, ok := cut(lines, seq.Line, seq.Column)
		if !ok {
			return nil, false, fmt.Errorf("cannot place the entry: add it by hand:\n%s", userEntry(u, "  "))
		}
		lines[seq.Line-1] = strings.TrimRight(head, " ") + comment + "\n"
		lines = insert(lines, seq.Line, userEntry(u, "  "))
		return []byte(strings.Join(lines, "")), true, nil
	}
	for _, item := range seq.Content {
		if n := value(item, "name"); n != nil && n.Value == u.Name {
			lines, err := setPassword(lines, item, u)
			return []byte(strings.Join(lines, "")), false, err
		}
	}
	if seq.Style&yaml.FlowStyle != 0 || seq.Content[0].Column < 3 {
		return nil, false, fmt.Errorf("its users are not a block list (- name: ...): add this entry by hand:\n%s", userEntry(u, "  "))
	}
	indent := strings.Repeat(" ", seq.Content[0].Column-3)
	return []byte(strings.Join(lines, "") + userEntry(u, indent)), true, nil
}

// setPassword replaces (or adds) the password line of an existing user.
func setPassword(lines []string, item *yaml.Node, u User) ([]string, error) {
	if item.Style&yaml.FlowStyle != 0 {
		return nil, fmt.Errorf("user %q is written in flow style ({...}): set its password by hand to %s", u.Name, quote(u.Password))
	}
	pw := value(item, "password")
	byHand := fmt.Errorf("user %q: set its password by hand to %s", u.Name, quote(u.Password))
	if pw == nil { // a line of its own, under the name
		name := key(item, "name")
		if _, ok := cut(lines, name.Line, name.Column); !ok {
			return nil, byHand
		}
		return insert(lines, name.Line, strings.Repeat(" ", name.Column-1)+"password: "+quote(u.Password)+"\n"), nil
	}
	if pw.Kind != yaml.ScalarNode || pw.Line != key(item, "password").Line {
		return nil, fmt.Errorf("user %q: the password is not on its key's line: set it by hand to %s", u.Name, quote(u.Password))
	}
	tail := "\n"
	if pw.LineComment != "" {
		tail = " " + pw.LineComment + "\n"
	}
	head, ok := cut(lines, pw.Line, pw.Column)
	if !ok {
		return nil, byHand
	}
	lines[pw.Line-1] = head + quote(u.Password) + tail
	return lines, nil
}

// cut returns line ln of lines (1-based, as YAML counts) up to the 1-based
// column col, which YAML counts in characters; false when the position is
// not in the text.
func cut(lines []string, ln, col int) (string, bool) {
	if ln < 1 || ln > len(lines) || col < 1 {
		return "", false
	}
	l := lines[ln-1]
	for i := range l {
		if col == 1 {
			return l[:i], true
		}
		col--
	}
	return l, col == 1
}

// userEntry is one user of the file, its dash indented by indent.
func userEntry(u User, indent string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s- name: %s\n%s  password: %s\n", indent, quote(u.Name), indent, quote(u.Password))
	if u.Role != "" {
		fmt.Fprintf(&b, "%s  role: %s\n", indent, u.Role)
	}
	if len(u.Lists) > 0 {
		q := make([]string, len(u.Lists))
		for i, l := range u.Lists {
			q[i] = quote(l)
		}
		fmt.Fprintf(&b, "%s  lists: [%s]\n", indent, strings.Join(q, ", "))
	}
	return b.String()
}

// quote writes s as a single-quoted YAML string: only ' needs escaping.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func insert(lines []string, at int, text string) []string {
	return append(lines[:at:at], append([]string{text}, lines[at:]...)...)
}

// usersNode returns the value of the top-level users key, nil if none.
func usersNode(doc *yaml.Node) *yaml.Node {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	return value(doc.Content[0], "users")
}

func key(m *yaml.Node, k string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == k {
			return m.Content[i]
		}
	}
	return nil
}

func value(m *yaml.Node, k string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == k {
			return m.Content[i+1]
		}
	}
	return nil
}

// writeAtomic replaces path with b through a file renamed over it, keeping
// the old file's mode and owner. A new file is 0640 and takes the group of
// its folder, so that a users file in /etc/vallum (root:vallum 0750) is
// readable by the daemon's user and no one else.
func writeAtomic(path string, b []byte) error {
	mode, uid, gid := fs.FileMode(0o640), -1, -1
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
		uid, gid = owner(st)
	} else if st, err := os.Stat(filepath.Dir(path)); err == nil {
		_, gid = owner(st)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	_, err = tmp.Write(b)
	if cerr := tmp.Chown(uid, gid); cerr != nil && uid != -1 {
		err = errors.Join(err, cerr) // a new file may stay in the user's group
	}
	err = errors.Join(err, tmp.Chmod(mode), tmp.Sync(), tmp.Close())
	if err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	return nil
}

func owner(st fs.FileInfo) (uid, gid int) {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(s.Uid), int(s.Gid)
	}
	return -1, -1
}
