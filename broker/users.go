package broker

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/vallum/vallum/internal/wire"
)

// Roles a user can have.
const (
	RoleHost     = "host"     // reads its lists, publishes only its sync markers
	RoleReporter = "reporter" // publishes bans and reads ban state
	RoleAdmin    = "admin"    // anything
)

// User is one entry of the users file.
type User struct {
	Name     string `yaml:"name"`
	Password string `yaml:"password"` // bcrypt or argon2id hash
	Role     string `yaml:"role"`
	// Publish and Subscribe are topic filters allowed on top of the role.
	Publish   []string `yaml:"publish"`
	Subscribe []string `yaml:"subscribe"`
	// Lists restricts the role to these list roots; default: all lists.
	Lists []string `yaml:"lists"`
}

type usersFile struct {
	Users []User `yaml:"users"`
}

// HashPassword returns a bcrypt hash of pw for the users file.
func HashPassword(pw string) (string, error) {
	if pw == "" {
		return "", errors.New("hash password: empty password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// loadUsers reads and checks a users file, reporting every problem at once.
func loadUsers(path string) (map[string]User, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read users file: %w", err)
	}
	return parseUsers(path, b)
}

// parseUsers is loadUsers for the file's content b.
func parseUsers(path string, b []byte) (map[string]User, error) {
	var f usersFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("users file %s is empty: it has no users (add one with `vallum broker add-user`)", path)
	} else if err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	users := make(map[string]User, len(f.Users))
	var errs []error
	for i, u := range f.Users {
		if err := checkUser(u); err != nil {
			errs = append(errs, fmt.Errorf("users file %s: user %d (%q): %w", path, i+1, u.Name, err))
			continue
		}
		if _, dup := users[u.Name]; dup {
			errs = append(errs, fmt.Errorf("users file %s: user %q is defined twice", path, u.Name))
		}
		users[u.Name] = u
	}
	return users, errors.Join(errs...)
}

func checkUser(u User) error {
	var errs []error
	if u.Name == "" {
		errs = append(errs, errors.New("missing name"))
	}
	switch {
	case !isHash(u.Password):
		errs = append(errs, errors.New("password is not a bcrypt or argon2id hash: plaintext passwords are refused; "+
			"store the output of `vallum broker hash-password`"))
	case strings.HasPrefix(u.Password, "$argon2id$") && !argon2Built:
		errs = append(errs, errors.New("argon2id hash: this router build checks bcrypt hashes only (argon2id costs "+
			"tens of MiB per login); set the password again with `vallum broker add-user`, which writes bcrypt"))
	}
	switch u.Role {
	case "", RoleHost, RoleReporter, RoleAdmin:
	default:
		errs = append(errs, fmt.Errorf("unknown role %q (want host, reporter or admin)", u.Role))
	}
	if u.Role == "" && len(u.Publish)+len(u.Subscribe) == 0 {
		errs = append(errs, errors.New("no role and no publish or subscribe filters: the user could do nothing"))
	}
	for _, l := range u.Lists { // the hub's keeper keeps them: each must name a list
		if err := wire.ValidRoot(l); err != nil {
			errs = append(errs, fmt.Errorf("list %q: %w", l, err))
		}
	}
	for _, f := range append(append([]string{}, u.Publish...), u.Subscribe...) {
		if !validFilter(f) {
			errs = append(errs, fmt.Errorf("bad topic filter %q", f))
		}
	}
	return errors.Join(errs...)
}

func isHash(h string) bool {
	for _, p := range []string{"$2a$", "$2b$", "$2y$", "$argon2id$"} {
		if strings.HasPrefix(h, p) {
			return true
		}
	}
	return false
}

// verifyPassword checks pw against a bcrypt or argon2id hash.
func verifyPassword(hash string, pw []byte) bool {
	if strings.HasPrefix(hash, "$argon2id$") {
		return verifyArgon2id(hash, pw)
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), pw) == nil
}

// passCache remembers passwords that verified, keyed by user, so that a
// client connecting once per ban (as fail2ban's actions do) costs one
// deliberately slow hash check, not one per connection. It stores a keyed
// MAC, never the password.
type passCache struct {
	key []byte
	mu  sync.Mutex
	ok  map[string][]byte
}

func newPassCache() *passCache {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // never fails (crypto/rand)
	return &passCache{key: k, ok: map[string][]byte{}}
}

func (c *passCache) mac(user string, pw []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write(pw)
	return m.Sum(nil)
}

// check verifies pw for u, through the cache.
func (c *passCache) check(u User, pw []byte) bool {
	sum := c.mac(u.Name, pw)
	c.mu.Lock()
	known := c.ok[u.Name]
	c.mu.Unlock()
	if known != nil && hmac.Equal(known, sum) {
		return true
	}
	if !verifyPassword(u.Password, pw) {
		return false
	}
	c.mu.Lock()
	c.ok[u.Name] = sum
	c.mu.Unlock()
	return true
}
