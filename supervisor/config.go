// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/xpra-proxy/xpra-proxy/supervisor/auth"
	"github.com/xpra-proxy/xpra-proxy/supervisor/limits"
)

// Config holds the supervisor's settings. Names follow `xpra proxy`'s
// options; the same keys may come from a TOML file (--config), with
// command-line flags overriding it.
type Config struct {
	BindTCP      []string `toml:"bind-tcp"`      // HOST:PORT, repeatable
	BindUnix     []string `toml:"bind-unix"`     // PATH, repeatable (xpra: --bind)
	Auth         []string `toml:"auth"`          // modules for unix sockets
	TCPAuth      []string `toml:"tcp-auth"`      // modules for TCP
	PasswordFile string   `toml:"password-file"` // the file module's default
	SocketDirs   []string `toml:"socket-dirs"`   // where workers look for sessions
	// Not xpra options: the proxy's own.
	PreauthUser        string   `toml:"preauth-user"`         // runs pre-auth processes (default xpra-proxy, else nobody)
	ControlUser        string   `toml:"control-user"`         // runs the control process (default xpra-proxy-control, else the pre-auth user)
	Worker             string   `toml:"worker"`               // path of xpra-proxy-worker
	LoginTimeout       Duration `toml:"login-timeout"`        // hello and challenge answer, in total
	PreauthPacketLimit int      `toml:"preauth-packet-limit"` // largest packet before authentication
	// PreauthDecompressedLimit bounds a packet before authentication once
	// decompressed: hellos are far below the packet limit, and inflating
	// costs CPU in proportion.
	PreauthDecompressedLimit int      `toml:"preauth-decompressed-limit"`
	FirstPacketTimeout       Duration `toml:"first-packet-timeout"` // a new connection's first bytes and its hello
	ServerHelloTimeout       Duration `toml:"server-hello-timeout"` // the relay's wait to connect to the session and for its hello
	// ProxyProtocolFrom are the load balancers (CIDRs or addresses) whose
	// TCP connections must start with a PROXY protocol header (HAProxy's
	// v1 or v2): the client address it carries is the connection's source.
	// Empty: no one's header is believed, and one is refused.
	ProxyProtocolFrom    []string `toml:"proxy-protocol-from"`
	ProxyProtocolTimeout Duration `toml:"proxy-protocol-timeout"` // for that header, from the hand-over

	// sshd's limits on unauthenticated work (package supervisor/limits).
	MaxStartups            limits.Startups     `toml:"max-startups"`              // start:rate:full, as sshd's MaxStartups
	PerSourceMaxStartups   int                 `toml:"per-source-max-startups"`   // per source block; 0: no limit
	PerSourceNetBlockSize  limits.NetBlockSize `toml:"per-source-net-block-size"` // "v4:v6" prefix bits of a source block
	PerSourcePenalty       Duration            `toml:"per-source-penalty"`        // after a failed login; 0: no penalties
	PerSourcePenaltyMax    Duration            `toml:"per-source-penalty-max"`    // doubling stops here
	PerSourcePenaltyForget Duration            `toml:"per-source-penalty-forget"` // a source without failures this long is forgotten
	PerSourcePenaltyTable  int                 `toml:"per-source-penalty-table"`  // most sources remembered
	PerSourceRate          float64             `toml:"per-source-rate"`           // new connections a second per source block or local uid; 0: no limit
	PerSourceBurst         int                 `toml:"per-source-burst"`          // of which this many at once
	PerUIDMaxStartups      int                 `toml:"per-uid-max-startups"`      // unauthenticated unix-socket connections per local uid; 0: no limit

	ControlSocket string `toml:"control-socket"` // the supervisor's own display for xpra info/stop; "off" for none
	RunDir        string `toml:"run-dir"`        // root-only state: the registry of relays (xpra-proxy list)
	// MetricsBind is the Prometheus endpoint's TCP address ("": none,
	// unless systemd passes a socket named metrics), served by the
	// unprivileged metrics process (metrics.go).
	MetricsBind string `toml:"metrics-bind"`

	// AuthFileOwner may own auth files and databases besides root (sshd's
	// StrictModes allows the user itself; here: an admin account).
	AuthFileOwner string `toml:"auth-file-owner"`

	// ArgvSecrets are auth specs given on the command line that carry a
	// secret (password,value=...): every local user reads them in ps.
	ArgvSecrets []string `toml:"-"`

	// The shared encoder worker: its socket ("": relays re-encode nothing)
	// and the user that must serve it.
	EncoderSocket string `toml:"encoder-socket"`
	EncoderUser   string `toml:"encoder-user"`

	FrontConfig     // one port for xpra, TLS, WebSocket and HTTP (front.go)
	SessionConfig   // sessions on demand (ondemand_config.go)
	AccountConfig   // who may be proxied to (account_config.go)
	DirectoryConfig // shared by several proxies: PostgreSQL (directory_config.go)
	// SessionHostsConfig: a front of session hosts (sessionhosts_config.go)
	SessionHostsConfig
}

// Duration is a time.Duration written as "30s" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses "30s", "2m".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", b, err)
	}
	d.Duration = v
	return nil
}

// Defaults are the settings before any file or flag.
func Defaults() Config {
	lim := limits.Defaults()
	return Config{
		PreauthUser:        "xpra-proxy",
		RunDir:             "/run/xpra-proxy",
		ControlUser:        "xpra-proxy-control",
		EncoderUser:        "xpra-proxy-encode",
		LoginTimeout:       Duration{120 * time.Second},
		FirstPacketTimeout: Duration{10 * time.Second},
		ServerHelloTimeout: Duration{30 * time.Second},
		// HAProxy sends its header as soon as it has connected.
		ProxyProtocolTimeout: Duration{5 * time.Second},
		PreauthPacketLimit:   1 << 20,
		// The largest real hello seen is 3.1.3's attach hello with its
		// keymap, 67 KB (6.5.3's: 4 KB): ~4× margin (SECURITY.md).
		PreauthDecompressedLimit: 256 << 10,

		// full 200: the reference's XPRA_PROXY_MAX_CONCURRENT_CONNECTIONS
		MaxStartups:            lim.MaxStartups,
		PerSourceMaxStartups:   lim.PerSource,
		PerSourceNetBlockSize:  lim.NetBlock,
		PerSourcePenalty:       Duration{lim.PenaltyMin},
		PerSourcePenaltyMax:    Duration{lim.PenaltyMax},
		PerSourcePenaltyForget: Duration{lim.PenaltyForget},
		PerSourcePenaltyTable:  lim.PenaltyTable,
		PerSourceRate:          lim.Rate,
		PerSourceBurst:         lim.Burst,
		PerUIDMaxStartups:      lim.PerUID,

		SessionConfig:   sessionDefaults(),
		AccountConfig:   accountDefaults(),
		DirectoryConfig: directoryDefaults(),
	}
}

// LoadFile merges a TOML file into c, rejecting keys it does not know (a
// typo in a security setting must not be ignored).
func (c *Config) LoadFile(path string) error {
	md, err := toml.DecodeFile(path, c)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("config %s: unknown keys: %s", path, strings.Join(keys, ", "))
	}
	return nil
}

type listFlag struct{ l *[]string }

func (f listFlag) String() string {
	if f.l == nil {
		return ""
	}
	return strings.Join(*f.l, " ")
}
func (f listFlag) Set(v string) error { *f.l = append(*f.l, v); return nil }

// countFlag is a count whose default lives in Defaults: -1 means not
// given on the command line, and --help shows no default of its own.
type countFlag struct{ p *int }

func newCountFlag(p *int) countFlag { *p = -1; return countFlag{p} }

func (f countFlag) String() string {
	if f.p == nil || *f.p < 0 {
		return ""
	}
	return strconv.Itoa(*f.p)
}

func (f countFlag) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return fmt.Errorf("%q: want 0 (no limit) or more", v)
	}
	*f.p = n
	return nil
}

// PrintFlags writes every option with its help text, for --help.
func PrintFlags(w io.Writer) {
	var file string
	var cli Config
	fs := flagSet(&file, &cli)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// ParseFlags reads the command line: --config first, then flags on top.
func ParseFlags(args []string) (Config, error) {
	c := Defaults()
	var file string
	var cli Config
	fs := flagSet(&file, &cli)
	fs.SetOutput(io.Discard) // the caller prints the error once
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if file != "" {
		if err := c.LoadFile(file); err != nil {
			return c, err
		}
	}
	merge(&c, cli)
	for _, l := range [][]string{cli.Auth, cli.TCPAuth, cli.SSLAuth, cli.WSAuth, cli.WSSAuth} {
		for _, text := range l {
			if spec, err := auth.ParseSpec(text); err == nil && auth.SecretOnCommandLine(spec) {
				c.ArgvSecrets = append(c.ArgvSecrets, spec.Name)
			}
		}
	}
	mergeLimits(&c, cli, fs)
	mergeFront(&c.FrontConfig, cli.FrontConfig)
	mergeSession(&c.SessionConfig, cli.SessionConfig)
	mergeAccount(&c.AccountConfig, cli.AccountConfig)
	mergeDirectory(&c.DirectoryConfig, cli.DirectoryConfig)
	mergeSessionHosts(&c.SessionHostsConfig, cli.SessionHostsConfig)
	return c, c.check()
}

// flagSet declares every option: file gets --config, cli the rest.
func flagSet(file *string, cli *Config) *flag.FlagSet {
	fs := flag.NewFlagSet("xpra-proxy", flag.ContinueOnError)
	fs.StringVar(file, "config", "", "TOML settings file (e.g. /etc/xpra-proxy/xpra-proxy.toml)")
	fs.Var(listFlag{&cli.BindTCP}, "bind-tcp", "listen on HOST:PORT (repeatable)")
	fs.Var(listFlag{&cli.BindUnix}, "bind-unix", "listen on a unix socket PATH (repeatable)")
	fs.Var(listFlag{&cli.BindUnix}, "bind", "same as --bind-unix (xpra's name)")
	fs.Var(listFlag{&cli.Auth}, "auth", "auth module for unix sockets, e.g. multifile,filename=/etc/xpra/users (repeatable: chained)")
	fs.Var(listFlag{&cli.Auth}, "unix-auth", "same as --auth")
	fs.Var(listFlag{&cli.TCPAuth}, "tcp-auth", "auth module for TCP, e.g. sqlite,filename=/etc/xpra/users.sdb")
	fs.StringVar(&cli.PasswordFile, "password-file", "", "password file for the file module")
	fs.Var(listFlag{&cli.SocketDirs}, "socket-dirs", "session socket directories (repeatable; default xpra's)")
	fs.StringVar(&cli.PreauthUser, "preauth-user", "", "user running pre-auth processes (default xpra-proxy, else nobody)")
	fs.StringVar(&cli.ControlUser, "control-user", "", "user running the :proxy control process (default xpra-proxy-control, else the pre-auth user)")
	fs.StringVar(&cli.Worker, "worker", "", "path of xpra-proxy-worker (default: beside this program)")
	registerLimitFlags(fs, cli)
	fs.DurationVar(&cli.LoginTimeout.Duration, "login-timeout", 0, "time to say hello and answer the challenge (default 120s)")
	fs.DurationVar(&cli.FirstPacketTimeout.Duration, "first-packet-timeout", 0, "time for a new connection's first bytes and its hello, and TCP_DEFER_ACCEPT on bind-tcp ports (default 10s; 0: off)")
	fs.DurationVar(&cli.ServerHelloTimeout.Duration, "server-hello-timeout", 0, "time for the relay to connect to the session and get its hello (default 30s)")
	fs.Var(listFlag{&cli.ProxyProtocolFrom}, "proxy-protocol-from", "a load balancer (CIDR or address) whose TCP connections start with a PROXY protocol v1/v2 header giving the client's address (repeatable; default none)")
	fs.DurationVar(&cli.ProxyProtocolTimeout.Duration, "proxy-protocol-timeout", 0, "time for a trusted load balancer's PROXY protocol header (default 5s)")
	fs.StringVar(&cli.EncoderSocket, "encoder-socket", "", "the shared encoder worker's socket: re-encode video for 3.1 servers (default none)")
	fs.StringVar(&cli.EncoderUser, "encoder-user", "", "the user serving encoder-socket (default xpra-proxy-encode)")
	fs.StringVar(&cli.RunDir, "run-dir", "", "root-only directory of the supervisor's state, e.g. the registry of relays (default /run/xpra-proxy)")
	fs.StringVar(&cli.AuthFileOwner, "auth-file-owner", "", "a user besides root who may own auth files and databases (default: root only)")
	fs.StringVar(&cli.ControlSocket, "control-socket", "", "the supervisor's control socket (default /run/xpra/HOST-proxy, i.e. :proxy; off for none)")
	fs.StringVar(&cli.MetricsBind, "metrics-bind", "", "HOST:PORT serving Prometheus metrics at /metrics (default none; off for none)")
	registerFrontFlags(fs, &cli.FrontConfig)
	registerSessionFlags(fs, &cli.SessionConfig)
	registerAccountFlags(fs, &cli.AccountConfig)
	registerDirectoryFlags(fs, &cli.DirectoryConfig)
	registerSessionHostFlags(fs, &cli.SessionHostsConfig)
	return fs
}

// merge applies the flags that were given over c.
func merge(c *Config, cli Config) {
	for _, p := range []struct{ dst, src *[]string }{
		{&c.BindTCP, &cli.BindTCP}, {&c.BindUnix, &cli.BindUnix}, {&c.Auth, &cli.Auth},
		{&c.TCPAuth, &cli.TCPAuth}, {&c.SocketDirs, &cli.SocketDirs}, {&c.ProxyProtocolFrom, &cli.ProxyProtocolFrom},
	} {
		if len(*p.src) > 0 {
			*p.dst = *p.src
		}
	}
	for _, p := range []struct{ dst, src *string }{
		{&c.PasswordFile, &cli.PasswordFile}, {&c.ControlSocket, &cli.ControlSocket}, {&c.PreauthUser, &cli.PreauthUser}, {&c.ControlUser, &cli.ControlUser}, {&c.Worker, &cli.Worker},
		{&c.EncoderSocket, &cli.EncoderSocket}, {&c.EncoderUser, &cli.EncoderUser}, {&c.AuthFileOwner, &cli.AuthFileOwner}, {&c.RunDir, &cli.RunDir},
		{&c.MetricsBind, &cli.MetricsBind},
	} {
		if *p.src != "" {
			*p.dst = *p.src
		}
	}
	if cli.LoginTimeout.Duration > 0 {
		c.LoginTimeout = cli.LoginTimeout
	}
	if cli.ServerHelloTimeout.Duration > 0 {
		c.ServerHelloTimeout = cli.ServerHelloTimeout
	}
	if cli.ProxyProtocolTimeout.Duration > 0 {
		c.ProxyProtocolTimeout = cli.ProxyProtocolTimeout
	}
}

func (c *Config) check() error {
	if c.FirstPacketTimeout.Duration > c.LoginTimeout.Duration {
		// The first packet is part of the login: never longer.
		c.FirstPacketTimeout = c.LoginTimeout
	}
	if _, err := c.proxyFrom(); err != nil {
		return err
	}
	if c.ProxyProtocolTimeout.Duration <= 0 {
		return fmt.Errorf("proxy-protocol-timeout %s: must be positive", c.ProxyProtocolTimeout.Duration)
	}
	if c.ProxyProtocolTimeout.Duration > c.LoginTimeout.Duration {
		c.ProxyProtocolTimeout = c.LoginTimeout // part of the login, like the first packet
	}
	if c.PreauthDecompressedLimit < 0 {
		return fmt.Errorf("preauth-decompressed-limit %d: want bytes, or 0 for the packet limit", c.PreauthDecompressedLimit)
	}
	if c.MetricsBind == "off" {
		c.MetricsBind = ""
	}
	if c.MetricsBind != "" {
		if _, port, err := net.SplitHostPort(c.MetricsBind); err != nil || port == "" {
			return fmt.Errorf("metrics-bind %q: want HOST:PORT, e.g. 127.0.0.1:9761", c.MetricsBind)
		}
	}
	if err := c.Limits().Check(); err != nil {
		return err
	}
	if err := c.SessionConfig.check(); err != nil {
		return err
	}
	if err := c.checkDirectory(); err != nil {
		return err
	}
	if err := c.checkSessionHosts(); err != nil {
		return err
	}
	if err := c.policy().CheckPatterns(); err != nil {
		return err
	}
	if c.Worker == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding xpra-proxy-worker: %w", err)
		}
		c.Worker = filepath.Join(filepath.Dir(exe), "xpra-proxy-worker")
		if _, err := os.Stat(c.Worker); err != nil {
			c.Worker = "/usr/libexec/xpra-proxy/xpra-proxy-worker"
		}
	}
	return nil
}

// proxyFrom parses proxy-protocol-from: CIDRs, or addresses meaning one
// host. An IPv4 entry also matches its IPv4-mapped IPv6 form, which a
// dual-stack listener reports.
func (c Config) proxyFrom() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, text := range c.ProxyProtocolFrom {
		p, err := netip.ParsePrefix(text)
		if err != nil {
			a, aerr := netip.ParseAddr(text)
			if aerr != nil {
				return nil, fmt.Errorf("proxy-protocol-from %q: want a CIDR such as 10.0.0.0/8 or an address: %w", text, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Zone() != "" {
			return nil, fmt.Errorf("proxy-protocol-from %q: an address with a zone is not a network", text)
		}
		if p != p.Masked() {
			// 10.1.2.3/8 is most likely a typo for a host or for 10.0.0.0/8:
			// refuse rather than trust more than was meant.
			return nil, fmt.Errorf("proxy-protocol-from %q: host bits set; did you mean %s?", text, p.Masked())
		}
		out = append(out, p)
	}
	return out, nil
}

// trustedProxy says whether a TCP peer may send a PROXY protocol header.
func trustedProxy(from []netip.Prefix, peer netip.Addr) bool {
	peer = peer.Unmap().WithZone("")
	for _, p := range from {
		if p.Contains(peer) {
			return true
		}
	}
	return false
}

// Limits is the limiter's view of the settings.
func (c Config) Limits() limits.Config {
	return limits.Config{
		MaxStartups:   c.MaxStartups,
		PerSource:     c.PerSourceMaxStartups,
		NetBlock:      c.PerSourceNetBlockSize,
		PenaltyMin:    c.PerSourcePenalty.Duration,
		PenaltyMax:    c.PerSourcePenaltyMax.Duration,
		PenaltyForget: c.PerSourcePenaltyForget.Duration,
		PenaltyTable:  c.PerSourcePenaltyTable,
		Rate:          c.PerSourceRate,
		Burst:         c.PerSourceBurst,
		PerUID:        c.PerUIDMaxStartups,
	}
}

func registerLimitFlags(fs *flag.FlagSet, cli *Config) {
	d := Defaults()
	fs.TextVar(&cli.MaxStartups, "max-startups", d.MaxStartups, "unauthenticated connections, sshd's start:rate:full (random early drop from start, all refused at full) or N")
	fs.IntVar(&cli.PerSourceMaxStartups, "per-source-max-startups", d.PerSourceMaxStartups, "unauthenticated connections per source block (0: no limit)")
	fs.TextVar(&cli.PerSourceNetBlockSize, "per-source-net-block-size", d.PerSourceNetBlockSize, "prefix bits grouping IPv4:IPv6 sources into blocks")
	fs.DurationVar(&cli.PerSourcePenalty.Duration, "per-source-penalty", d.PerSourcePenalty.Duration, "a source's wait after a failed login, doubling with each consecutive failure (0: no penalties)")
	fs.DurationVar(&cli.PerSourcePenaltyMax.Duration, "per-source-penalty-max", d.PerSourcePenaltyMax.Duration, "longest penalty")
	fs.DurationVar(&cli.PerSourcePenaltyForget.Duration, "per-source-penalty-forget", d.PerSourcePenaltyForget.Duration, "a source without failures for this long is forgotten")
	fs.IntVar(&cli.PerSourcePenaltyTable, "per-source-penalty-table", d.PerSourcePenaltyTable, "most sources remembered (the least recently failed is forgotten first)")
	fs.Float64Var(&cli.PerSourceRate, "per-source-rate", d.PerSourceRate, "new connections a second per source block or local uid (0: no limit)")
	fs.IntVar(&cli.PerSourceBurst, "per-source-burst", d.PerSourceBurst, "new connections at once per source block or local uid, refilled at per-source-rate")
	fs.IntVar(&cli.PerUIDMaxStartups, "per-uid-max-startups", d.PerUIDMaxStartups, "unauthenticated unix-socket connections per local uid (0: no limit)")
	fs.IntVar(&cli.PreauthDecompressedLimit, "preauth-decompressed-limit", d.PreauthDecompressedLimit, "largest packet before authentication once decompressed, bytes (0: preauth-packet-limit)")
}

// mergeLimits applies the limit flags that were given: their zero values
// mean something (no limit, no penalties), so presence decides.
func mergeLimits(c *Config, cli Config, fs *flag.FlagSet) {
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "max-startups":
			c.MaxStartups = cli.MaxStartups
		case "per-source-max-startups":
			c.PerSourceMaxStartups = cli.PerSourceMaxStartups
		case "per-source-net-block-size":
			c.PerSourceNetBlockSize = cli.PerSourceNetBlockSize
		case "per-source-penalty":
			c.PerSourcePenalty = cli.PerSourcePenalty
		case "per-source-penalty-max":
			c.PerSourcePenaltyMax = cli.PerSourcePenaltyMax
		case "per-source-penalty-forget":
			c.PerSourcePenaltyForget = cli.PerSourcePenaltyForget
		case "per-source-penalty-table":
			c.PerSourcePenaltyTable = cli.PerSourcePenaltyTable
		case "per-source-rate":
			c.PerSourceRate = cli.PerSourceRate
		case "per-source-burst":
			c.PerSourceBurst = cli.PerSourceBurst
		case "per-uid-max-startups":
			c.PerUIDMaxStartups = cli.PerUIDMaxStartups
		case "preauth-decompressed-limit":
			c.PreauthDecompressedLimit = cli.PreauthDecompressedLimit
		case "first-packet-timeout": // 0 means off
			c.FirstPacketTimeout = cli.FirstPacketTimeout
		}
	})
}
