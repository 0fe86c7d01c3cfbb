// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/xpra-proxy/xpra-proxy/ldapauth"
)

// ldapOptions are the options the ldap module knows (dashes are already
// underscores): xpra's own (host, port, tls, username_format, cacert,
// encoding) and ours. Anything else is refused.
var ldapOptions = []string{"host", "port", "tls", "username_format", "cacert", "encoding",
	"domain", "require_group", "ids", "user", "helper", "timeout", "allow_unencrypted_passwords"}

// ldapDefaultFormat is xpra's default username_format.
const ldapDefaultFormat = "cn=%username, o=%domain"

// ldapModule is xpra's "ldap" module: a simple bind as the user's DN
// proves the password, in xpra-proxy-ldap (package ldapauth) under a uid
// of its own, never in the supervisor. The supervisor only opens the TCP
// connection to the directory and hands it over.
type ldapModule struct {
	helper           ldapauth.Helper
	host             string
	port             int
	tls              string
	format           string
	domain           string
	caPEM            []byte
	latin1           bool
	groupDN          string
	idsFromDirectory bool
	timeout          time.Duration
	allowUnencrypted bool
}

func newLDAP(spec Spec, cfg Config) (Module, error) {
	for k := range spec.Options {
		if !slices.Contains(ldapOptions, k) {
			return nil, fmt.Errorf("auth: module ldap: unknown option %q (known: %s)", k,
				strings.ReplaceAll(strings.Join(ldapOptions, ", "), "_", "-"))
		}
	}
	opt := func(k, def string) string {
		if v, ok := spec.Options[k]; ok {
			return v
		}
		return def
	}
	m := &ldapModule{host: opt("host", "localhost"), format: opt("username_format", ldapDefaultFormat),
		timeout: ldapauth.DefaultTimeout}
	if m.host == "" || len(m.host) > ldapauth.MaxHost || strings.ContainsAny(m.host, " /:[]") && net.ParseIP(m.host) == nil {
		return nil, fmt.Errorf("auth: module ldap: host %q is not a host name or address", m.host)
	}
	switch strings.ToLower(opt("tls", ldapauth.TLSLDAPS)) {
	case "ldaps", "1", "yes", "true", "on":
		// xpra's tls=1 is LDAPS.
		m.tls, m.port = ldapauth.TLSLDAPS, ldapauth.DefaultPort
	case "starttls":
		m.tls, m.port = ldapauth.TLSStartTLS, ldapauth.StartTLSPort
	case "0", "no", "false", "off":
		return nil, fmt.Errorf("auth: module ldap: tls=%s would send passwords to the directory in the clear; use tls=ldaps or tls=starttls", spec.Options["tls"])
	default:
		return nil, fmt.Errorf("auth: module ldap: tls=%q: want ldaps or starttls", spec.Options["tls"])
	}
	if v, ok := spec.Options["port"]; ok {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("auth: module ldap: port %q is not a TCP port", v)
		}
		m.port = p
	}
	if err := checkFormat(m.format); err != nil {
		return nil, fmt.Errorf("auth: module ldap: username-format: %w", err)
	}
	m.domain = opt("domain", defaultDomain())
	if strings.Contains(m.format, "%domain") && strings.ContainsAny(m.domain, ",+\"\\<>;=") {
		return nil, fmt.Errorf("auth: module ldap: domain %q has DN special characters", m.domain)
	}
	if v, ok := spec.Options["cacert"]; ok {
		pemData, err := readCACert(v)
		if err != nil {
			return nil, fmt.Errorf("auth: module ldap: cacert: %w", err)
		}
		m.caPEM = pemData
	}
	switch strings.ToLower(opt("encoding", "utf-8")) {
	case "utf-8", "utf8":
	case "latin-1", "latin1", "iso-8859-1", "iso8859-1":
		m.latin1 = true
	default:
		return nil, fmt.Errorf("auth: module ldap: encoding %q: want utf-8 or latin-1", spec.Options["encoding"])
	}
	if v, ok := spec.Options["require_group"]; ok {
		if v == "" || len(v) > ldapauth.MaxDN || !strings.Contains(v, "=") || !utf8.ValidString(v) {
			return nil, fmt.Errorf("auth: module ldap: require-group %q is not a group's DN", v)
		}
		m.groupDN = v
	}
	switch opt("ids", "passwd") {
	case "passwd":
	case "directory":
		m.idsFromDirectory = true
	default:
		return nil, fmt.Errorf("auth: module ldap: ids=%q: want passwd or directory", spec.Options["ids"])
	}
	if v, ok := spec.Options["timeout"]; ok {
		d, err := parseTimeout(v)
		if err != nil {
			return nil, fmt.Errorf("auth: module ldap: %w", err)
		}
		m.timeout = d
	}
	if v, ok := spec.Options["allow_unencrypted_passwords"]; ok {
		b, err := parseBool(v)
		if err != nil {
			return nil, fmt.Errorf("auth: module ldap: allow-unencrypted-passwords: %w", err)
		}
		m.allowUnencrypted = b
	}
	m.helper.Path = opt("helper", ldapauth.FindProgram())
	if err := ldapauth.CheckProgram(m.helper.Path); err != nil {
		return nil, fmt.Errorf("auth: module ldap: %w (set helper=PATH)", err)
	}
	cred, err := helperCredential(opt("user", ldapauth.DefaultUser), cfg.HelperForbiddenUIDs)
	if err != nil {
		return nil, fmt.Errorf("auth: module ldap: %w", err)
	}
	m.helper.Cred = cred
	return m, nil
}

// checkFormat: a username_format must name the user, and be a DN.
func checkFormat(f string) error {
	switch {
	case !strings.Contains(f, "%username"):
		return fmt.Errorf("%q does not contain %%username", f)
	case !strings.Contains(f, "="):
		return fmt.Errorf("%q is not a DN (attribute=value, ...)", f)
	case len(f) > ldapauth.MaxDN/2 || !utf8.ValidString(f):
		return fmt.Errorf("%q is too long or not UTF-8", f)
	}
	return nil
}

// defaultDomain is xpra's %domain: what follows the first dot of the
// host's name, else "localdomain". Only the name the kernel has is read
// (no DNS query from root).
func defaultDomain() string {
	h, err := os.Hostname()
	if _, d, ok := strings.Cut(h, "."); err == nil && ok && d != "" {
		return d
	}
	return "localdomain"
}

// readCACert reads the CA certificates the directory's must chain to.
// Not a secret, but whoever could change it could stand in for the
// directory: root's (or ours) and writable by no one else.
func readCACert(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file", path)
	case fi.Mode().Perm()&0o022 != 0:
		return nil, fmt.Errorf("%s is writable by group or others (mode %v)", path, fi.Mode().Perm())
	case !ok || (st.Uid != 0 && int(st.Uid) != os.Geteuid()):
		return nil, fmt.Errorf("%s is not owned by root", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, ldapauth.MaxCAPEM+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > ldapauth.MaxCAPEM {
		return nil, fmt.Errorf("%s is over %d bytes", path, ldapauth.MaxCAPEM)
	}
	n := 0
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return data, nil
}

// helperCredential is the LDAP helper's identity: the named system user
// with no supplementary groups; never root, never one of the uids in
// forbidden (the pre-auth and control users: a compromised pre-auth
// process must not be able to trace a process that holds a password).
func helperCredential(name string, forbidden []int) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("helper user %q: %w (create it: the package's sysusers.d file does)", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid == 0 || gid == 0 {
		return nil, fmt.Errorf("helper user %s must not be root", name)
	}
	if slices.Contains(forbidden, uid) {
		return nil, fmt.Errorf("helper user %s (uid %d) is the pre-auth or control user; it needs a uid of its own", name, uid)
	}
	if os.Geteuid() != 0 {
		return nil, nil // a test as an ordinary user: it runs as us
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

func (m *ldapModule) Name() string         { return "ldap" }
func (m *ldapModule) NeedsChallenge() bool { return true }

// CheckTransport: the same rule as pam's (the password itself crosses the
// connection, masked by the xor digest only).
func (m *ldapModule) CheckTransport(confidential bool) error {
	if confidential || m.allowUnencrypted {
		return nil
	}
	return &Refusal{
		Detail: "this server checks directory passwords, which it accepts only over an encrypted connection (TLS)",
		Log:    "ldap: refusing to ask for a password on an unencrypted connection (set allow-unencrypted-passwords=yes on the ldap module to allow it)",
	}
}

// BindDN is the user's DN from the format: %username (escaped as a DN
// value, RFC 4514) and %domain.
func (m *ldapModule) BindDN(username string) string {
	return strings.ReplaceAll(strings.ReplaceAll(m.format, "%username", escapeDNValue(username)), "%domain", m.domain)
}

// escapeDNValue escapes an attribute value for a DN (RFC 4514 §2.4).
// Client usernames are checked before (account.ValidUsername) and carry
// none of these; this keeps a DN a DN whatever the caller passes.
func escapeDNValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case strings.IndexByte(",+\"\\<>;=", c) >= 0,
			c == '#' && i == 0, c == ' ' && (i == 0 || i == len(s)-1):
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// encode is the password as the directory compares it: utf-8 (xpra's
// default; a password that is not valid UTF-8 came from a latin-1 client
// and is re-encoded, as for pam) or latin-1. The result is a copy.
func (m *ldapModule) encode(p []byte) ([]byte, error) {
	if !m.latin1 {
		return systemPassword(p), nil
	}
	if !utf8.Valid(p) {
		return slices.Clone(p), nil // latin-1 already
	}
	out := make([]byte, 0, len(p))
	for _, r := range string(p) {
		if r > 0xff {
			return nil, fmt.Errorf("the password has %q, which latin-1 cannot encode", r)
		}
		out = append(out, byte(r))
	}
	return out, nil
}

// Authenticate opens the directory connection, hands it and the password
// to the helper, and grants the account: the user's passwd entry, or the
// uid and gid the directory holds (ids=directory), which the supervisor's
// account policy then checks as for every module.
func (m *ldapModule) Authenticate(r Request) (*Session, error) {
	if r.Plain == nil {
		return nil, fmt.Errorf("%w: ldap: the client did not answer with the xor digest", ErrDenied)
	}
	if r.Username == "" {
		return nil, fmt.Errorf("%w: ldap: no username given", ErrDenied)
	}
	password, err := m.encode(r.Plain)
	if err != nil {
		return nil, fmt.Errorf("%w: ldap: user %q: %w", ErrDenied, r.Username, err)
	}
	defer clear(password)
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	rep, err := m.run(ctx, r.Username, password)
	if errors.Is(err, ldapauth.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return nil, &Refusal{Detail: ldapauth.ReasonTimeout, Log: fmt.Sprintf("ldap: user %q: %v", r.Username, err)}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: ldap: user %q: %w", ErrDenied, r.Username, err)
	}
	if !rep.OK {
		ref := &Refusal{Log: fmt.Sprintf("ldap: user %q: %s", r.Username, rep.Log)}
		if rep.Reason != ldapauth.ReasonFailed {
			ref.Detail = rep.Reason
		}
		return nil, ref
	}
	if !m.idsFromDirectory {
		sess, err := UserSession(r.Username)
		if err != nil {
			return nil, fmt.Errorf("ldap: user %q accepted by the directory: %w", r.Username, err)
		}
		return sess, nil
	}
	if rep.UID < 0 || rep.GID < 0 {
		return nil, fmt.Errorf("%w: ldap: user %q: the helper sent no uidNumber/gidNumber", ErrDenied, r.Username)
	}
	return &Session{UID: int(rep.UID), GID: int(rep.GID)}, nil
}

// run connects to the directory (a TCP connect only: no byte of it is
// read here) and runs the helper on the connection.
func (m *ldapModule) run(ctx context.Context, username string, password []byte) (ldapauth.Reply, error) {
	addr := net.JoinHostPort(m.host, strconv.Itoa(m.port))
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return ldapauth.Reply{Reason: ldapauth.ReasonUnavailable, Log: fmt.Sprintf("connecting to %s: %v", addr, err), UID: -1, GID: -1}, nil
	}
	defer c.Close()
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return ldapauth.Reply{}, fmt.Errorf("ldap: %s: not a TCP connection", addr)
	}
	f, err := tc.File() // a duplicate, close-on-exec until it is passed
	if err != nil {
		return ldapauth.Reply{}, fmt.Errorf("ldap: %s: %w", addr, err)
	}
	defer f.Close()
	left := time.Until(deadlineOf(ctx, m.timeout))
	if left < time.Millisecond {
		return ldapauth.Reply{}, ldapauth.ErrTimeout
	}
	return m.helper.Run(ctx, ldapauth.Request{
		TLS: m.tls, ServerName: m.host, CAPEM: m.caPEM, BindDN: m.BindDN(username), Password: password,
		Username: username, GroupDN: m.groupDN, WantIDs: m.idsFromDirectory, TimeoutMS: left.Milliseconds(),
	}, f)
}

func deadlineOf(ctx context.Context, d time.Duration) time.Time {
	if t, ok := ctx.Deadline(); ok {
		return t
	}
	return time.Now().Add(d)
}
