//go:build linux

package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// msgDestroySetElem is NFT_MSG_DESTROYSETELEM (Linux 6.3): a delete that
// ignores absent elements. x/sys/unix does not name it yet.
const msgDestroySetElem = 0x1e

// elem is one set element as the kernel takes it.
type elem struct {
	key     []byte
	end     bool  // NFT_SET_ELEM_INTERVAL_END: the key is one past a range
	timeout int64 // seconds; >= 0 sends a per-element timeout (0: never expires)
	comment string
}

// message is one NEWSETELEM, DELSETELEM or DESTROYSETELEM of a batch, with
// the indices of the ops whose elements it carries.
type message struct {
	kind  uint16
	set   *nftables.Set
	excl  bool // NLM_F_EXCL: an element already there is refused (EEXIST)
	ops   []int
	elems []elem
}

// encode builds the netlink message (nfgenmsg header and attributes).
func (m *message) encode(seq uint32) (netlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, m.set.Table.Name)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, m.set.Name)
	ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(ne *netlink.AttributeEncoder) error {
		for i, e := range m.elems {
			ne.Nested(uint16(i+1), func(ee *netlink.AttributeEncoder) error {
				ee.Nested(unix.NFTA_SET_ELEM_KEY, func(ke *netlink.AttributeEncoder) error {
					ke.Bytes(unix.NFTA_DATA_VALUE, e.key)
					return nil
				})
				if e.end {
					ee.Bytes(unix.NFTA_SET_ELEM_FLAGS, binary.BigEndian.AppendUint32(nil, unix.NFT_SET_ELEM_INTERVAL_END))
				}
				if e.timeout >= 0 {
					ee.Bytes(unix.NFTA_SET_ELEM_TIMEOUT, binary.BigEndian.AppendUint64(nil, uint64(e.timeout)*1000))
				}
				if e.comment != "" {
					ee.Bytes(unix.NFTA_SET_ELEM_USERDATA, userdata.AppendString(nil, userdata.NFTNL_UDATA_SET_ELEM_COMMENT, e.comment))
				}
				return nil
			})
		}
		return nil
	})
	data, err := ae.Encode()
	if err != nil {
		return netlink.Message{}, err
	}
	flags := netlink.Request
	if m.kind == unix.NFT_MSG_NEWSETELEM {
		flags |= netlink.Create // no Excl: an element already there is no error
		if m.excl {
			flags |= netlink.Excl
		}
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | m.kind), Flags: flags, Sequence: seq},
		Data:   append([]byte{byte(m.set.Table.Family), unix.NFNETLINK_V0, 0, 0}, data...),
	}, nil
}

// transact sends msgs as one nftables transaction and returns the errno
// the kernel gave each refused message, by index. The kernel checks every
// message of a batch and reports each refusal, then commits the batch only
// when none was refused (nfnetlink_rcv_batch). Only the last message asks
// for an ack: it marks the end of the kernel's answers.
func (b *Backend) transact(ctx context.Context, msgs []message) (map[int]error, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	begin := b.nextSeq(len(msgs) + 2)
	batch := make([]netlink.Message, 0, len(msgs)+2)
	batch = append(batch, batchMsg(unix.NFNL_MSG_BATCH_BEGIN, begin))
	size := 0
	for i := range msgs {
		nm, err := msgs[i].encode(begin + 1 + uint32(i))
		if err != nil {
			return nil, fmt.Errorf("encode set elements: %w", err)
		}
		size += len(nm.Data) + 16
		batch = append(batch, nm)
	}
	last := begin + uint32(len(msgs))
	batch[len(batch)-1].Header.Flags |= netlink.Acknowledge
	batch = append(batch, batchMsg(unix.NFNL_MSG_BATCH_END, last+1))
	// A batch must reach the kernel in one sendmsg: make room for it.
	setBufForce(b.raw, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, max(size+size/4, 1<<20))
	if _, err := b.raw.SendMessages(batch); err != nil {
		return nil, fmt.Errorf("nft send batch: %w", err)
	}
	return b.readAcks(ctx, begin, last)
}

// readAcks reads the kernel's answers up to the ack of message last.
func (b *Backend) readAcks(ctx context.Context, begin, last uint32) (map[int]error, error) {
	deadline, _ := ctx.Deadline()
	if err := b.raw.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	failed := map[int]error{}
	for {
		replies, err := b.raw.Receive()
		var oe *netlink.OpError
		if errors.As(err, &oe) && oe.Sequence != 0 {
			if oe.Sequence == begin {
				return nil, fmt.Errorf("nft batch refused: %w", oe.Err)
			}
			if oe.Sequence > begin && oe.Sequence <= last {
				failed[int(oe.Sequence-begin-1)] = withMessage(oe)
			}
			if oe.Sequence == last {
				return failed, nil
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("nft batch: %w", err)
		}
		for _, r := range replies {
			if r.Header.Sequence == last {
				return failed, nil
			}
		}
	}
}

// withMessage keeps the kernel's extended ack text next to the errno.
func withMessage(oe *netlink.OpError) error {
	if oe.Message == "" {
		return oe.Err
	}
	return fmt.Errorf("%s: %w", oe.Message, oe.Err)
}

func batchMsg(t uint16, seq uint32) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(t), Flags: netlink.Request, Sequence: seq},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES},
	}
}

// nextSeq reserves n sequence numbers and returns the first.
func (b *Backend) nextSeq(n int) uint32 {
	if b.seq > 1<<31 {
		b.seq = 1 << 20
	}
	s := b.seq
	b.seq += uint32(n)
	return s
}
