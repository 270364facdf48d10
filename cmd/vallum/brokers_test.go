package main

import (
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

// Several brokers, in every form a user may give them, come out as one
// ordered list of URLs, and every one of their hosts is allowlisted.
func TestSeveralBrokers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		env   string // VALLUM_BROKER
		urls  []string
		hosts []string
	}{
		{"-h list", []string{"-h", "n1,n2, n3", "-p", "1884"},
			"", []string{"tcp://n1:1884", "tcp://n2:1884", "tcp://n3:1884"}, []string{"n1", "n2", "n3"}},
		{"-h list with TLS", []string{"-h", "n1,2001:db8::1", "-T"},
			"", []string{"ssl://n1:1883", "ssl://[2001:db8::1]:1883"}, []string{"n1", "2001:db8::1"}},
		{"--broker repeated and listed", []string{"--broker", "tcp://n1:1883", "--broker", "ssl://n2:8883,ssl://n3:8883"},
			"", []string{"tcp://n1:1883", "ssl://n2:8883", "ssl://n3:8883"}, []string{"n1", "n2", "n3"}},
		{"VALLUM_BROKER list", nil,
			"tcp://n1:1883,tcp://n2:1883", []string{"tcp://n1:1883", "tcp://n2:1883"}, []string{"n1", "n2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("VALLUM_BROKER", tc.env)
			c := loaded(t, append(tc.args, "-t", "blacklist")...)
			urls, err := c.brokerURLs()
			if err != nil || !slices.Equal(urls, tc.urls) {
				t.Errorf("brokerURLs = %q, %v; want %q", urls, err, tc.urls)
			}
			if got := c.brokerHosts(); !slices.Equal(got, tc.hosts) {
				t.Errorf("brokerHosts = %q, want %q", got, tc.hosts)
			}
			if c.embedded() {
				t.Error("embedded with brokers named")
			}
			o, err := c.bridgeOptions(slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil || !slices.Equal(o.Brokers, tc.urls) {
				t.Errorf("bridge brokers = %q, %v; want %q", o.Brokers, err, tc.urls)
			}
		})
	}
}

func TestBadBrokerInTheList(t *testing.T) {
	c := loaded(t, "--broker", "tcp://n1:1883,ftp://n2:21", "--broker", "n3", "-t", "blacklist")
	_, err := c.brokerURLs()
	for _, want := range []string{`"ftp://n2:21": scheme`, `"n3": want scheme://host:port`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("brokerURLs error %v, want it to say %s", err, want)
		}
	}
}

func TestSyncTimeoutSetting(t *testing.T) {
	if c := loaded(t, "-h", "n1", "-t", "blacklist"); c.SyncTimeout != time.Minute {
		t.Errorf("default sync timeout %v, want 1m", c.SyncTimeout)
	}
	t.Setenv("VALLUM_SYNC_TIMEOUT", "15s")
	if c := loaded(t, "-h", "n1", "-t", "blacklist"); c.SyncTimeout != 15*time.Second {
		t.Errorf("VALLUM_SYNC_TIMEOUT=15s gives %v", c.SyncTimeout)
	}
	if c := loaded(t, "-h", "n1", "-t", "blacklist", "--sync-timeout", "2m"); c.SyncTimeout != 2*time.Minute {
		t.Errorf("--sync-timeout 2m gives %v", c.SyncTimeout)
	}
}
