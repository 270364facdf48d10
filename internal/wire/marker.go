package wire

// Namespace is the topic level vallum keeps for itself: no list lives
// under it, and only a host's own marker topic is open to that host.
const Namespace = "vallum"

// MarkerPrefix is where a client publishes sync markers to itself:
// MarkerPrefix + CLIENT_ID. Brokers deliver one client's messages in
// order, so a marker that comes back tells the client that everything the
// broker sent before it has arrived.
const MarkerPrefix = Namespace + "/sync/"

// MarkerTopic is the marker topic of one client.
func MarkerTopic(clientID string) string { return MarkerPrefix + clientID }
