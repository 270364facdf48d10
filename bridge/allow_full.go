//go:build !(vallum_small && (mips || mipsle))

package bridge

// allowFull: this build lifts the bans a new allow entry covers, keeps the
// allowlist in Options.AllowFile, and logs each entry's comment (see
// allow_small.go).
const allowFull = true
