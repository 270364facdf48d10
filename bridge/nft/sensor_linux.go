//go:build linux && !vallum_lean

package nft

import (
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// sensorBuilt: vallum_lean builds leave the sensor out.
const sensorBuilt = true

// SensorRule is the scan sensor's logging rule: new TCP connections and
// new unicast UDP flows to ports no socket listens on, at most Rate a
// second each, logged to NFLOG group Group.
type SensorRule struct {
	Group uint16
	Rate  uint64
}

// Sensor has EnsureRules end the input chain with the sensor's rules:
//
//	tcp flags & (fin|syn|rst|ack) == syn socket transparent <any> counter return
//	tcp flags & (fin|syn|rst|ack) == syn counter limit rate R/second burst R log group G
//	meta l4proto udp meta pkttype host ct state new socket transparent <any> counter return
//	meta l4proto udp meta pkttype host ct state new counter limit rate R/second burst R log group G
//
// (`nft list` prints the first and third without their socket lookup.)
// The counters say how many SYNs and UDP flows found a socket and how
// many were logged. For UDP, closed means what it means for TCP: no
// socket bound to the port. Broadcasts and multicasts (NetBIOS, mDNS,
// SSDP) are not scans and are not logged; nor are answers to this host's
// own queries that come late (conntrack knows them: not new).
//
// The socket lookup finds the listening (or established) socket a SYN is
// for; where there is none, the expression ends the rule and the SYN
// falls through to the log. It runs after the drops, so a banned scanner
// is no longer logged, and before fw4's and iptables' chains, so a port
// they close to the outside still counts as closed only when nothing
// listens on it.
func (b *Backend) Sensor(r SensorRule) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sensor = &r
}

// sensorRules are the expressions of Sensor's two rules.
func sensorRules(r SensorRule) [][]expr.Any {
	listening := append(tcpSYN(), &expr.Socket{Key: expr.SocketKeyTransparent, Register: 1}, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictReturn})
	burst := uint32(min(r.Rate, 1<<20))
	log := append(tcpSYN(),
		&expr.Counter{},
		&expr.Limit{Type: expr.LimitTypePkts, Rate: r.Rate, Unit: expr.LimitTimeSecond, Burst: burst},
		&expr.Log{Key: 1 << unix.NFTA_LOG_GROUP, Group: r.Group})
	udpBound := append(udpNew(), &expr.Socket{Key: expr.SocketKeyTransparent, Register: 1}, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictReturn})
	udpLog := append(udpNew(),
		&expr.Counter{},
		&expr.Limit{Type: expr.LimitTypePkts, Rate: r.Rate, Unit: expr.LimitTimeSecond, Burst: burst},
		&expr.Log{Key: 1 << unix.NFTA_LOG_GROUP, Group: r.Group})
	return [][]expr.Any{listening, log, udpBound, udpLog}
}

// udpNew matches a unicast UDP packet to this host that starts a flow
// conntrack has not seen.
func udpNew() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Meta{Key: expr.MetaKeyPKTTYPE, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.PACKET_HOST}},
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

// tcpSYN matches a TCP segment with SYN set and FIN, RST and ACK clear:
// the first packet of a new connection.
func tcpSYN() []expr.Any {
	const fin, syn, rst, ack = 0x01, 0x02, 0x04, 0x10
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{fin | syn | rst | ack}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{syn}},
	}
}

// addSensorRules appends the sensor's rules to chain c, when Sensor asked.
func (b *Backend) addSensorRules(c *nftables.Chain) {
	if b.sensor == nil {
		return
	}
	for _, e := range sensorRules(*b.sensor) {
		b.conn.AddRule(&nftables.Rule{Table: b.table, Chain: c, Exprs: e})
	}
}
