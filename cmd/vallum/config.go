package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/vallum/vallum/bridge"
	"github.com/vallum/vallum/broker"
	"github.com/vallum/vallum/internal/guard"
)

// defaultConfigFile is read when it exists and --config is not given.
const defaultConfigFile = "/etc/vallum/vallum.yaml"

// config is every setting, whether it came from a flag, a VALLUM_* variable
// or the YAML file. Its keys are the long flag names with - turned into _.
type config struct {
	Host         string   `mapstructure:"host" yaml:"host"`
	Port         int      `mapstructure:"port" yaml:"port"`
	Broker       []string `mapstructure:"broker" yaml:"broker"`
	User         string   `mapstructure:"user" yaml:"user"`
	Password     string   `mapstructure:"password" yaml:"password"`
	PasswordFile string   `mapstructure:"password_file" yaml:"password_file"`
	Topic        []string `mapstructure:"topic" yaml:"topic"`
	TLS          bool     `mapstructure:"tls" yaml:"tls"`
	CAFile       string   `mapstructure:"cafile" yaml:"cafile"`
	Cert         string   `mapstructure:"cert" yaml:"cert"`
	Key          string   `mapstructure:"key" yaml:"key"`
	ClientID     string   `mapstructure:"client_id" yaml:"client_id"`
	QoS          int      `mapstructure:"qos" yaml:"qos"`

	SyncTimeout time.Duration `mapstructure:"sync_timeout" yaml:"sync_timeout"`
	Keeper      bool          `mapstructure:"keeper" yaml:"keeper"`
	LegacyState bool          `mapstructure:"legacy_state" yaml:"legacy_state"`
	MemoryLimit string        `mapstructure:"memory_limit" yaml:"memory_limit"`

	Backend    string   `mapstructure:"backend" yaml:"backend"`
	NftTable   string   `mapstructure:"nft_table" yaml:"nft_table"`
	NftRules   bool     `mapstructure:"nft_rules" yaml:"nft_rules"`
	NoCreate   bool     `mapstructure:"no_create" yaml:"no_create"`
	MaxElem    uint32   `mapstructure:"maxelem" yaml:"maxelem"`
	Allow      []string `mapstructure:"allow" yaml:"allow"`
	WidestV4   int      `mapstructure:"widest_v4" yaml:"widest_v4"`
	WidestV6   int      `mapstructure:"widest_v6" yaml:"widest_v6"`
	MaxPayload int      `mapstructure:"max_payload" yaml:"max_payload"`
	LogLevel   string   `mapstructure:"log_level" yaml:"log_level"`
	LogFormat  string   `mapstructure:"log_format" yaml:"log_format"`
	Metrics    string   `mapstructure:"metrics" yaml:"metrics"`
	DataDir    string   `mapstructure:"data_dir" yaml:"data_dir"`

	Listen         []string `mapstructure:"listen" yaml:"listen"`
	Users          string   `mapstructure:"users" yaml:"users"`
	AllowAnonymous bool     `mapstructure:"allow_anonymous" yaml:"allow_anonymous"`
	TLSCert        string   `mapstructure:"tls_cert" yaml:"tls_cert"`
	TLSKey         string   `mapstructure:"tls_key" yaml:"tls_key"`
	TLSClientCA    string   `mapstructure:"tls_client_ca" yaml:"tls_client_ca"`
	BrokerLimit    []string `mapstructure:"broker_limit" yaml:"broker_limit"`
	WSHost         []string `mapstructure:"ws_host" yaml:"ws_host"`
	Web            string   `mapstructure:"web" yaml:"web"`

	KillConnections []string `mapstructure:"kill_connections" yaml:"kill_connections"`
	Policy          []string `mapstructure:"policy" yaml:"policy"`

	Sensor            string        `mapstructure:"sensor" yaml:"sensor"`
	SensorGroup       int           `mapstructure:"sensor_group" yaml:"sensor_group"`
	SensorPorts       int           `mapstructure:"sensor_ports" yaml:"sensor_ports"`
	SensorWindow      time.Duration `mapstructure:"sensor_window" yaml:"sensor_window"`
	SensorIgnorePorts []string      `mapstructure:"sensor_ignore_ports" yaml:"sensor_ignore_ports"`
	SensorRate        int           `mapstructure:"sensor_rate" yaml:"sensor_rate"`
	SensorBanTime     time.Duration `mapstructure:"sensor_ban_time" yaml:"sensor_ban_time"`
	SensorIPv6Prefix  int           `mapstructure:"sensor_ipv6_prefix" yaml:"sensor_ipv6_prefix"`
	SensorReport      bool          `mapstructure:"sensor_report" yaml:"sensor_report"`

	file string // the config file read, if any
	// legacySet: legacy_state was given (flag, environment or file);
	// unset, a list already in the old spelling keeps it (keeper.Options).
	legacySet bool
}

// connFlags are the settings of every command that talks to a broker: the
// vallumd flags (-h -p -u -P -t -T -c) and what vallum adds to them.
func connFlags(f *pflag.FlagSet) {
	f.StringP("host", "h", "", "MQTT broker host, or several separated by commas, tried in turn (none: start the embedded broker on 127.0.0.1:1883)")
	f.IntP("port", "p", 1883, "MQTT broker port")
	f.StringArray("broker", nil, "MQTT broker URL instead of -h/-p: tcp://, ssl://, ws:// or wss://HOST:PORT; repeatable (or separated by commas), tried in turn")
	f.StringP("user", "u", "", "MQTT user name")
	f.StringP("password", "P", "", "MQTT password (visible in ps: prefer --password-file or VALLUM_PASSWORD)")
	f.String("password-file", "", "file holding the MQTT password")
	f.StringArrayP("topic", "t", nil, "list topic and its sets: ROOT[=SET4[,SET6]], repeatable (sets default to ROOT's last level and that with 6)")
	f.BoolP("tls", "T", false, "connect with TLS")
	f.StringP("cafile", "c", "", "CA file to verify the broker with (implies TLS)")
	f.String("cert", "", "client certificate for mutual TLS")
	f.String("key", "", "client key for mutual TLS")
	f.String("client-id", "", "MQTT client id (default: stable per host, kept in the data directory)")
	f.Int("qos", 1, "MQTT QoS of the subscriptions")
	f.String("data-dir", "/var/lib/vallum", "directory for the client id and the embedded broker's store")
	f.String("log-level", "info", "log level: debug, info, warn or error")
	f.String("log-format", "text", "log format: text or json")
}

// daemonFlags are the settings of the bridge itself.
func daemonFlags(f *pflag.FlagSet) {
	f.String("backend", "ipset", "kernel backend: ipset, nft, auto or dryrun")
	f.String("nft-table", "inet vallum", "nftables FAMILY TABLE of the sets, e.g. \"inet fw4\"")
	f.Bool("nft-rules", false, "with nft: add input and forward rules that drop members of the sets")
	f.Bool("no-create", false, "do not create missing sets: fail instead")
	f.Uint32("maxelem", bridge.DefaultMaxElem, "capacity of the sets vallum creates")
	f.StringArray("allow", nil, "CIDR that is never banned, repeatable (loopback, link-local, multicast, own and broker addresses always are)")
	f.Int("widest-v4", guard.DefaultWidest4, "broadest IPv4 prefix length that may be banned")
	f.Int("widest-v6", guard.DefaultWidest6, "broadest IPv6 prefix length that may be banned")
	f.Int("max-payload", bridge.DefaultMaxPayload, "largest message payload in bytes")
	f.Duration("sync-timeout", bridge.DefaultSyncTimeout, "a sync that receives nothing for this long drops the connection and moves to the next broker")
	if keeperBuilt {
		keeperFlag(f)
	}
	f.String("metrics", "", "serve Prometheus /metrics and /healthz on this address, e.g. 127.0.0.1:9101")
	f.StringArray("kill-connections", nil, "list topic ROOT whose bans also cut the banned addresses' open connections (local TCP sockets, conntrack entries), repeatable")
	sensorFlags(f)
}

// brokerFlags are the settings of the embedded broker.
func brokerFlags(f *pflag.FlagSet) {
	f.StringArray("listen", []string{"127.0.0.1:1883"}, "embedded broker listener, repeatable: tcp://HOST:PORT, tls://, ws:// or HOST:PORT")
	f.String("users", "", "YAML file of broker users and their ACLs")
	f.Bool("allow-anonymous", false, "let clients without credentials in, even on non-loopback listeners")
	f.String("tls-cert", "", "certificate for tls:// listeners")
	f.String("tls-key", "", "key for tls:// listeners")
	f.String("tls-client-ca", "", "CA that client certificates must be signed by (mutual TLS)")
	f.StringArray("broker-limit", nil, "embedded broker limit NAME=VALUE, repeatable (names and defaults: broker/README.md), e.g. max_conns_per_addr=512")
	f.StringArray("ws-host", nil, "name WebSocket clients may give as Host besides the listener's address (a reverse proxy's), repeatable")
	if broker.WebBuilt { // not in the router builds
		f.String("web", "", "serve the hub's web view on this address (127.0.0.1:8080): lists, hosts, bans, live events; needs --users (admins act, reporters look)")
	}
	policyFlag(f)
	legacyStateFlag(f)
	f.String("memory-limit", defaultMemoryLimit, "soft memory limit of the process (Go's GOMEMLIMIT) while it runs the embedded broker, such as 200MiB, raised to 12 % above the live heap when that outgrows it; 0: none")
}

// legacyStateFlag adds --legacy-state, the hub's and the keeper's.
func legacyStateFlag(f *pflag.FlagSet) {
	f.Bool("legacy-state", false, "keep one retained state per ban besides the list's chunks, for hosts of the previous release (README, Upgrading)")
}

// loadConfig merges, in order of precedence, the command's flags, VALLUM_*
// variables, the config file and the flag defaults.
func loadConfig(cmd *cobra.Command) (config, error) {
	v := viper.New()
	v.SetEnvPrefix("VALLUM")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	var bindErr error
	keys := configKeys()
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if key := strings.ReplaceAll(f.Name, "-", "_"); keys[key] {
			bindErr = errors.Join(bindErr, v.BindPFlag(key, f))
		}
	})
	if bindErr != nil {
		return config{}, bindErr
	}
	file, _ := cmd.Flags().GetString("config")
	if file == "" {
		file = os.Getenv("VALLUM_CONFIG")
	}
	if file == "" {
		if _, err := os.Stat(defaultConfigFile); err == nil {
			file = defaultConfigFile
		}
	}
	var c config
	if file != "" {
		m, err := readConfigFile(file)
		if err != nil {
			return c, err
		}
		if err := v.MergeConfigMap(m); err != nil {
			return c, fmt.Errorf("config file %s: %w", file, err)
		}
	}
	topicsAsList(v)
	if err := decodeConfig(v, &c); err != nil {
		return c, fmt.Errorf("config %s: %w", orFlags(file), err)
	}
	c.file = file
	c.legacySet = v.IsSet("legacy_state")
	return c, nil
}

// topicsAsList reads a topic given as one string (VALLUM_TOPIC, a YAML
// scalar `topic: x`) as topics separated by white space. Viper would split it
// at commas, and a comma belongs to one topic: ROOT=SET4,SET6.
func topicsAsList(v *viper.Viper) {
	if s, ok := v.Get("topic").(string); ok {
		v.Set("topic", strings.Fields(s))
	}
}

// readConfigFile decodes the YAML file as viper's own YAML codec does (the
// same go.yaml.in/yaml/v3, into a map). Going through v.ReadInConfig instead
// would link every codec viper knows (TOML, dotenv, JSON): its codec
// registry falls back to all of them, about 300 KB of a static mipsle build.
func readConfigFile(file string) (map[string]any, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("config file %s does not exist", file)
	}
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", file, err)
	}
	m := map[string]any{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("config file %s: %w", file, err)
	}
	return m, unknownKeys(file, b)
}

// configKeys are the keys of the config file, from the struct tags; flags
// of one command alone (ban --timeout) are not configuration.
func configKeys() map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeFor[config]()
	for i := range t.NumField() {
		if k := t.Field(i).Tag.Get("mapstructure"); k != "" {
			keys[k] = true
		}
	}
	return keys
}

func orFlags(file string) string {
	if file == "" {
		return "(flags and environment)"
	}
	return file
}
