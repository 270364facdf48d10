//go:build !vallum_lean

package keeper

// chunksBuilt: this build publishes lists as chunks (chunks.go, cut.go).
const chunksBuilt = true

// ChunksBuilt reports whether this build's keeper publishes lists as
// chunks (not in the 32-bit MIPS router builds).
const ChunksBuilt = chunksBuilt
