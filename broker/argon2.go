//go:build !vallum_small

package broker

import (
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// argon2Built: argon2id hashes are checked. The router builds
// (contrib/build-static.sh, tag vallum_small) leave argon2id out: its usual
// cost is 64 MiB per login, too much for a router, and it is 23 KB of
// their 10 MB budget.
const argon2Built = true

// verifyArgon2id checks pw against a PHC string:
// $argon2id$v=19$m=MEMORY_KIB,t=TIME,p=THREADS$SALT$HASH (unpadded base64).
func verifyArgon2id(hash string, pw []byte) bool {
	f := strings.Split(hash, "$")
	if len(f) != 6 || f[2] != "v=19" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || t == 0 || p == 0 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(f[4])
	want, err2 := base64.RawStdEncoding.DecodeString(f[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey(pw, salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}
