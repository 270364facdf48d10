//go:build vallum_lean

package keeper

// chunksBuilt: the 32-bit MIPS router builds leave the compact list out
// (about 95 KB: with it they are over the 10 MB goal). Their keeper keeps
// per-ban state for every ban, as with LegacyState, and publishes no
// chunks; the constant lets the linker drop that code whole.
const chunksBuilt = false

// ChunksBuilt reports whether this build's keeper publishes lists as
// chunks (not in the 32-bit MIPS router builds).
const ChunksBuilt = chunksBuilt
