//go:build vallum_small

package broker

// argon2Built: see argon2.go. A users file with an argon2id hash is refused
// at load in this build (checkUser), so this is never reached.
const argon2Built = false

func verifyArgon2id(string, []byte) bool { return false }
