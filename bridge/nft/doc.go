// Package nft is the bridge.Backend for nftables sets, over netlink
// (github.com/google/nftables for queries and set creation, hand-built
// element batches for Apply). It never runs the nft command.
//
// Sets live in one table, "inet vallum" by default (Options.Table), and are
// addressed by name. When vallum creates a list's sets itself it makes two:
//
//	NAME      type ipv4_addr|ipv6_addr; flags timeout; size N   (single addresses)
//	NAME_net  type ipv4_addr|ipv6_addr; flags interval,timeout; size 2N (prefixes)
//
// because an interval set takes incremental adds at only a few thousand
// elements/s once it holds 100,000, while a hash set keeps ~200,000/s at a
// million. Apply sends full-length prefixes to NAME and shorter ones to
// NAME_net; List and Info combine both. The companion NAME_net is used
// whenever it exists next to a non-interval NAME, so sets made by an earlier
// run are found again. A set the user made (e.g. in OpenWrt's "inet fw4") is
// used as it is, never altered: an interval set takes everything, a plain set
// takes only addresses (prefixes are refused with bridge.ErrSetType). An
// interval element costs two slots of the set's size (start and end).
//
// Each Apply is one netlink transaction. An add is sent as "destroy element"
// then "new element" in the same transaction, which refreshes the timeout and
// comment of an element already there (an add with Keep is sent alone, as an
// exclusive "new element", so that one already there is refused with
// bridge.ErrExists and left as it is); "destroy" (Linux 6.3+) also makes the
// delete of an absent element a no-op. Older kernels get DELSETELEM and the
// absent elements are dropped from the batch on retry. When the kernel
// refuses a transaction, the messages it names are split in halves and the
// transaction is sent again, until each refusal is pinned to one op, which
// is reported in a *bridge.ApplyError while the others apply.
package nft
