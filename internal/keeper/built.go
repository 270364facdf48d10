//go:build !(vallum_small && (mips || mipsle))

package keeper

// chunksBuilt: this build publishes lists as chunks (chunks.go, cut.go).
const chunksBuilt = true
