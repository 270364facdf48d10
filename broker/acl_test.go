package broker

import "testing"

func TestCovers(t *testing.T) {
	tests := []struct {
		allowed, f string
		want       bool
	}{
		{"blacklist/#", "blacklist", true},
		{"blacklist/#", "blacklist/ban/#", true},
		{"blacklist/#", "#", false},
		{"blacklist/#", "+/ban/#", false},
		{"blacklist/ban/#", "blacklist/ban/+", true},
		{"blacklist/ban/+", "blacklist/ban/#", false},
		{"blacklist/+/x", "blacklist/a/x", true},
		{"blacklist", "blacklist/add", false},
		{"vallum/sync/#", "vallum/sync/host1", true},
	}
	for _, tt := range tests {
		if got := covers(tt.allowed, tt.f); got != tt.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tt.allowed, tt.f, got, tt.want)
		}
	}
}

func TestAccess(t *testing.T) {
	lists := []string{"blacklist", "site1/blacklist"}
	host, rep := roleAccess(RoleHost, lists), roleAccess(RoleReporter, lists)
	anyRep, anyHost := roleAccess(RoleReporter, nil), roleAccess(RoleHost, nil)
	tests := []struct {
		name  string
		a     access
		pub   bool
		topic string
		want  bool
	}{
		{"host reads its list", host, false, "site1/blacklist/#", true},
		{"host reads no other", host, false, "blacklist2/#", false},
		{"host cannot ban", host, true, "blacklist/add", false},
		{"host cannot write state", host, true, "blacklist/ban/192.0.2.1", false},
		{"host sync marker", host, true, "vallum/sync/h1", true},
		{"host reads its sync markers", host, false, "vallum/sync/h1", true},
		{"host cannot forge another's marker", host, true, "vallum/sync/h2", false},
		{"host cannot read another's markers", host, false, "vallum/sync/h2", false},
		{"host cannot read every marker", host, false, "vallum/sync/#", false},
		{"any-list host cannot read markers", anyHost, false, "#", false},
		{"any-list host cannot read markers by +", anyHost, false, "+/sync/h2", false},
		{"any-list host reads a list", anyHost, false, "zone9/list/#", true},
		{"reporter reads no sync markers", rep, false, "vallum/sync/h1", false},
		{"reporter bans", rep, true, "blacklist", true},
		{"reporter unbans", rep, true, "site1/blacklist/del", true},
		{"reporter writes state", rep, true, "blacklist/ban/192.0.2.1", true},
		{"reporter not another list", rep, true, "blacklist2/add", false},
		{"reporter reads state", rep, false, "blacklist/ban/#", true},
		{"reporter reads no events", rep, false, "blacklist/add", false},
		{"reporter no sys", rep, false, "$SYS/#", false},
		{"any-list reporter bans anywhere", anyRep, true, "zone9/list", true},
		{"any-list reporter no sync", anyRep, true, "vallum/sync/x", false},
		{"any-list reporter reads states", anyRep, false, "+/ban/#", true},
		{"any-list reporter reads no events", anyRep, false, "#", false},
		{"host reads its list's record", host, false, "vallum/keeper/site1/blacklist", true},
		{"host reads no other record", host, false, "vallum/keeper/blacklist2", false},
		{"host reads no record by wildcard", host, false, "vallum/keeper/#", false},
		{"host cannot write its record", host, true, "vallum/keeper/blacklist", false},
		{"reporter reads its list's record", rep, false, "vallum/keeper/blacklist", true},
		{"reporter cannot write its record", rep, true, "vallum/keeper/blacklist", false},
		{"any-list host reads every record", anyHost, false, "vallum/keeper/#", true},
		{"any-list host still no markers", anyHost, false, "vallum/+/h2", false},
		{"any-list reporter reads a record", anyRep, false, "vallum/keeper/zone9/list", true},
		{"any-list reporter cannot write a record", anyRep, true, "vallum/keeper/zone9/list", false},
		{"no filter grants a record", access{reporter: true, publish: []string{"#"}}, true, "vallum/keeper/blacklist", false},
		{"admin writes a record", access{admin: true}, true, "vallum/keeper/blacklist", true},
		{"host reads its list's manifest", host, false, "vallum/manifest/site1/blacklist", true},
		{"host reads its list's chunks", host, false, "vallum/list/site1/blacklist/+/+", true},
		{"host reads a chunk", host, false, "vallum/list/blacklist/0000019ad6f3c2a1/3", true},
		{"host reads no chunks by #", host, false, "vallum/list/blacklist/#", false},
		{"host reads no other list's chunks", host, false, "vallum/list/blacklist2/+/+", false},
		{"host reads no other manifest", host, false, "vallum/manifest/blacklist2", false},
		{"host cannot write a chunk", host, true, "vallum/list/blacklist/0000019ad6f3c2a1/0", false},
		{"reporter reads its list's chunks", rep, false, "vallum/list/blacklist/+/+", true},
		{"reporter cannot write a manifest", rep, true, "vallum/manifest/blacklist", false},
		{"reporter cannot write a chunk", rep, true, "vallum/list/blacklist/0000019ad6f3c2a1/0", false},
		{"list site1 reads no chunks of site1/blacklist", roleAccess(RoleHost, []string{"site1"}), false, "vallum/list/site1/blacklist/0000019ad6f3c2a1/0", false},
		{"any-list host reads every manifest", anyHost, false, "vallum/manifest/#", true},
		{"any-list reporter reads chunks", anyRep, false, "vallum/list/zone9/list/+/+", true},
		{"any-list reporter cannot write a chunk", anyRep, true, "vallum/list/zone9/list/0000019ad6f3c2a1/0", false},
		{"no filter grants a chunk", access{reporter: true, publish: []string{"#"}}, true, "vallum/list/blacklist/0000019ad6f3c2a1/0", false},
		{"no filter grants a manifest", access{host: true, publish: []string{"vallum/#"}}, true, "vallum/manifest/blacklist", false},
		{"explicit filter", access{publish: []string{"feeds/#"}}, true, "feeds/x", true},
		{"nothing by default", access{}, false, "blacklist/#", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.a.canSubscribe(tt.topic, "h1")
			if tt.pub {
				got = tt.a.canPublish(tt.topic, "h1")
			}
			if got != tt.want {
				t.Errorf("publish=%v %q = %v, want %v", tt.pub, tt.topic, got, tt.want)
			}
		})
	}
}
