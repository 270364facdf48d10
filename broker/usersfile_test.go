package broker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func hashed(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// mustLogIn checks that the file at path lets name in with pw, as the
// broker would check it.
func mustLogIn(t *testing.T, path, name, pw string, want bool) {
	t.Helper()
	users, err := loadUsers(path)
	if err != nil {
		t.Fatalf("the broker refuses the file: %v", err)
	}
	u, ok := users[name]
	if got := ok && verifyPassword(u.Password, []byte(pw)); got != want {
		t.Errorf("%s with password %q logs in: %v, want %v", name, pw, got, want)
	}
}

func TestSetUserEdits(t *testing.T) {
	other := hashed(t, "other-pw")
	tests := []struct {
		name, before string
		added        bool
	}{
		{"new file", "", true},
		{"only comments", "# users of the hub\n", true},
		{"users: null", "# hub\nusers:\n", true},
		{"users: []", "users: []  # none yet\n", true},
		{"append, indented", "# hub users\nusers:\n  - name: other\n    password: '" + other + "'\n    role: reporter\n# end\n", true},
		{"append, dash at column 1", "users:\n- name: other\n  password: \"" + other + "\"\n  role: reporter\n", true},
		{"change password", "users:\n  - name: edge1  # the first edge\n    password: '" + other + "'  # set 2026-11-01\n    role: host\n  - name: other\n    password: " + other + "\n    role: reporter\n", false},
		{"add a missing password", "users:\n  - name: edge1\n    role: host\n  - name: other\n    password: " + other + "\n    role: reporter\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users.yaml")
			if tt.before != "" {
				if err := os.WriteFile(path, []byte(tt.before), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			added, err := SetUser(path, User{Name: "edge1", Password: hashed(t, "new-pw"), Role: RoleHost})
			if err != nil {
				t.Fatal(err)
			}
			if added != tt.added {
				t.Errorf("added = %v, want %v", added, tt.added)
			}
			after, _ := os.ReadFile(path)
			t.Logf("before:\n%safter:\n%s", tt.before, after)
			mustLogIn(t, path, "edge1", "new-pw", true)
			mustLogIn(t, path, "edge1", "other-pw", false)
			if strings.Contains(tt.before, "name: other") {
				mustLogIn(t, path, "other", "other-pw", true)
			}
			users, _ := loadUsers(path)
			if users["edge1"].Role != RoleHost {
				t.Errorf("edge1's role is %q, want host", users["edge1"].Role)
			}
			for _, l := range strings.Split(tt.before, "\n") {
				if strings.Contains(l, "#") && !strings.Contains(string(after), l[strings.Index(l, "#"):]) {
					t.Errorf("comment %q lost", l[strings.Index(l, "#"):])
				}
			}
			st, _ := os.Stat(path)
			want := os.FileMode(0o600) // kept
			if tt.before == "" {
				want = 0o640 // new: the daemon's group may read it
			}
			if st.Mode().Perm() != want {
				t.Errorf("mode %o, want %o", st.Mode().Perm(), want)
			}
		})
	}
}

// A file SetUser cannot edit safely, or whose edit would not load, is left
// as it was, with a message; so is a user the broker would refuse.
func TestSetUserRefuses(t *testing.T) {
	h := hashed(t, "pw")
	tests := []struct {
		name, before string
		u            User
		want         string
	}{
		{"flow style user", "users:\n  - {name: edge1, password: '" + h + "', role: host}\n", User{Name: "edge1", Password: h, Role: RoleHost}, "flow style"},
		{"flow style list", "users: [{name: a, password: '" + h + "', role: host}]\n", User{Name: "edge1", Password: h, Role: RoleHost}, "by hand"},
		{"broken file", "users:\n  - name: a\n   role: host\n", User{Name: "edge1", Password: h, Role: RoleHost}, "yaml"},
		{"another user is bad", "users:\n  - name: a\n    password: plain\n    role: host\n", User{Name: "edge1", Password: h, Role: RoleHost}, "left unchanged"},
		{"plaintext password", "", User{Name: "edge1", Password: "plain", Role: RoleHost}, "plaintext"},
		{"unknown role", "", User{Name: "edge1", Password: h, Role: "root"}, "unknown role"},
		{"no name", "", User{Password: h, Role: RoleHost}, "missing name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users.yaml")
			if tt.before != "" {
				os.WriteFile(path, []byte(tt.before), 0o600)
			}
			_, err := SetUser(path, tt.u)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("SetUser = %v, want an error naming %q", err, tt.want)
			}
			after, rerr := os.ReadFile(path)
			if string(after) != tt.before || tt.before == "" && rerr == nil {
				t.Errorf("file changed:\n%s", after)
			}
			if m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*")); len(m) > 0 {
				t.Errorf("temporary files left: %v", m)
			}
		})
	}
}

// Names and lists with YAML's special characters are written so that they
// read back as the same strings.
func TestSetUserQuotes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yaml")
	for _, name := range []string{"o'brien", "#x", "a: b", "- y", "true", "1883"} {
		if _, err := SetUser(path, User{Name: name, Password: hashed(t, name), Role: RoleReporter, Lists: []string{"site1/blacklist", "x'y"}}); err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		mustLogIn(t, path, name, name, true)
		users, _ := loadUsers(path)
		if l := users[name].Lists; len(l) != 2 || l[1] != "x'y" {
			t.Errorf("%q: lists read back as %q", name, l)
		}
	}
}

// FuzzSetUserText: whatever the file holds, the edit never panics, and an
// edit it accepts loads with the user's new hash, the other users as they
// were (editUsers checks that; here the check is checked).
func FuzzSetUserText(f *testing.F) {
	for _, s := range []string{"", "users:", "users:\n\n\n", "users: ~", "users: \n  # c\n", "---\nusers:\n",
		"users: {}", "users: x", "users: []", "# only\n", "users:\n  - name: a\n    password: 'h'\n    role: host\n  - {name: b}\n",
		"users:\n- name: edge1\n  role: host\n", "users:\n  - name: edge1\n    password: |\n      multi\n    role: host\n",
		"users:\n  - name: edge1\n    password:\n    role: host\n", "users:\n  -\n", "users:\n  - name: edge1\n    password: 'x' # c\n",
		"users: # c\n  - name: edge1\n    password: x\n", "users:\n\t- x\n", " ?", " &0,", "users:\r 0", "users:\r\n  - name: b\r\n    password: x\r\n",
		"users:\n  - name: edge1\n    password: &a x\n  - name: b\n    password: *a\n"} {
		f.Add(s)
	}
	h := "$2a$04$7Tuy2ra5RxPidXVTd2J/reN7mCidJas4XPcfsXl5Dz8fwmL0Vnh7u"
	f.Fuzz(func(t *testing.T, before string) {
		u := User{Name: "edge1", Password: h, Role: RoleHost}
		out, _, err := editUsers("f", []byte(before), u)
		if err != nil {
			return // refused: SetUser leaves the file unchanged
		}
		after, err := parseUsers("f", out)
		if err != nil || after["edge1"].Password != h {
			t.Fatalf("accepted edit: %v, edge1 %+v, of:\n%s\nto:\n%s", err, after["edge1"], before, out)
		}
		was, _ := parseUsers("f", []byte(before))
		for name, w := range was {
			if name != "edge1" && after[name].Password != w.Password {
				t.Errorf("user %s changed:\n%s\nto:\n%s", name, before, out)
			}
		}
	})
}

// A users-file user with the name of an extra user (the daemon's own
// bridge's login) is refused at start, not silently replaced by it: the
// file's user would find its password no longer works.
func TestExtraUserNameTaken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yaml")
	file := "users:\n  - name: vallum-local\n    password: \"" + hashed(t, "pw") + "\"\n    role: admin\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(Options{Listeners: []Listener{local(KindTCP)}, UsersFile: path, Lists: []string{"bl"},
		ExtraUsers: []User{{Name: "vallum-local", Password: hashed(t, "other"), Role: RoleAdmin}}})
	if err == nil || !strings.Contains(err.Error(), `user "vallum-local": the name is reserved`) {
		t.Fatalf("New = %v, want the reserved name refused", err)
	}
}
