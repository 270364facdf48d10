//go:build !vallum_small

package broker

import "testing"

func TestArgon2id(t *testing.T) {
	// Made by the reference implementation (Debian's argon2):
	// echo -n secret | argon2 somesalt -id -t 2 -m 10 -p 1 -e
	const h = "$argon2id$v=19$m=1024,t=2,p=1$c29tZXNhbHQ$L+Zv6RUcZHNM8MRv8NxKmDbA+W2z7wbsR1KkBvCYVuU"
	if !verifyPassword(h, []byte("secret")) {
		t.Errorf("argon2id refused the right password")
	}
	if verifyPassword(h, []byte("wrong")) {
		t.Errorf("argon2id accepted a wrong password")
	}
}
