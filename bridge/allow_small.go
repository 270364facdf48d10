//go:build vallum_small && (mips || mipsle)

package bridge

// allowFull: the 32-bit MIPS router builds follow the shared allowlist (its
// entries join the guard at once, and every sync reads it before any ban),
// and leave out, for size: lifting the bans already in the kernel sets
// that a new entry covers (a keeper elsewhere deletes their state, which
// lifts them here too), keeping the allowlist in the data dir, and reading
// an entry's comment.
const allowFull = false
