// SPDX-License-Identifier: GPL-2.0-or-later

// Package ldapcheck is the LDAP half of xpra-proxy-ldap: TLS on the
// directory connection the supervisor opened, a simple bind as the user,
// the group and id look-ups, and the reply (protocol: package ldapauth).
// Only the helper imports it: no other process links an LDAP client.
package ldapcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/xpra-proxy/xpra-proxy/ldapauth"
)

// maxPacket bounds one BER message from the directory: our answers are an
// entry with two attributes or a group's DN, far below this.
const maxPacket = 256 << 10

func init() {
	// The decoder's budget: the library's default is 2 GiB per packet.
	ber.MaxPacketLengthBytes = maxPacket
}

// TLSConfig is the certificate check of the directory: its chain against
// the request's CAs (else the system roots, roots loaded by the caller
// before the sandbox), the name it must carry, TLS 1.2 or later.
func TLSConfig(r ldapauth.Request, roots *x509.CertPool) (*tls.Config, error) {
	if len(r.CAPEM) > 0 {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(r.CAPEM) {
			return nil, errors.New("cacert: no PEM certificate in it")
		}
	}
	if roots == nil {
		return nil, errors.New("no CA certificates: neither cacert nor the system's roots")
	}
	return &tls.Config{RootCAs: roots, ServerName: r.ServerName, MinVersion: tls.VersionTLS12}, nil
}

// Check runs the exchange on conn (the directory) and returns the reply.
// It never returns OK without a successful bind as r.BindDN with
// r.Password, and, when asked, the group membership and the ids.
func Check(ctx context.Context, conn net.Conn, r ldapauth.Request, roots *x509.CertPool) ldapauth.Reply {
	deadline := time.Now().Add(time.Duration(r.TimeoutMS) * time.Millisecond)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	conn.SetDeadline(deadline)
	cfg, err := TLSConfig(r, roots)
	if err != nil {
		return unavailable(err)
	}
	var l *ldap.Conn
	if r.TLS == ldapauth.TLSLDAPS {
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return unavailable(fmt.Errorf("TLS: %w", err))
		}
		l = ldap.NewConn(tc, true)
		l.Start()
	} else {
		l = ldap.NewConn(conn, false)
		l.Start()
		if err := l.StartTLS(cfg); err != nil {
			l.Close()
			return unavailable(fmt.Errorf("StartTLS: %w", err))
		}
	}
	defer l.Close()
	l.SetTimeout(time.Until(deadline))
	if err := l.Bind(r.BindDN, string(r.Password)); err != nil {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			// Wrong password and unknown DN alike (the directory does not
			// say which, RFC 4513 §6.3.1).
			return failed(fmt.Sprintf("bind as %q: invalid credentials", r.BindDN))
		}
		return unavailable(fmt.Errorf("bind as %q: %w", r.BindDN, err))
	}
	if r.GroupDN != "" {
		ok, err := member(l, r)
		if err != nil {
			return unavailable(fmt.Errorf("group %q: %w", r.GroupDN, err))
		}
		if !ok {
			return failed(fmt.Sprintf("%q (user %q) is not a member of %q", r.BindDN, r.Username, r.GroupDN))
		}
	}
	rep := ldapauth.Reply{OK: true, UID: -1, GID: -1}
	if r.WantIDs {
		uid, gid, err := ids(l, r.BindDN)
		if err != nil {
			return failed(fmt.Sprintf("%q: %v", r.BindDN, err))
		}
		rep.UID, rep.GID = uid, gid
	}
	rep.Log = fmt.Sprintf("bound as %q", r.BindDN)
	return rep
}

// member looks the group entry up with a filter that matches only if the
// user is in it: groupOfNames (member), groupOfUniqueNames (uniqueMember)
// or posixGroup (memberUid, by name). The directory evaluates it, so no
// list of members is read.
func member(l *ldap.Conn, r ldapauth.Request) (bool, error) {
	filter := fmt.Sprintf("(|(member=%s)(uniqueMember=%s)(memberUid=%s))",
		ldap.EscapeFilter(r.BindDN), ldap.EscapeFilter(r.BindDN), ldap.EscapeFilter(r.Username))
	res, err := l.Search(ldap.NewSearchRequest(r.GroupDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, timeLimit(r), false, filter, []string{"1.1"}, nil))
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return len(res.Entries) == 1, nil
}

// ids reads the entry's uidNumber and gidNumber (posixAccount).
func ids(l *ldap.Conn, dn string) (int64, int64, error) {
	res, err := l.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 0, false, "(objectClass=*)", []string{"uidNumber", "gidNumber"}, nil))
	if err != nil {
		return 0, 0, fmt.Errorf("reading its uidNumber and gidNumber: %w", err)
	}
	if len(res.Entries) != 1 {
		return 0, 0, fmt.Errorf("%d entries for its own DN", len(res.Entries))
	}
	e := res.Entries[0]
	uid, err := id(e, "uidNumber")
	if err != nil {
		return 0, 0, err
	}
	gid, err := id(e, "gidNumber")
	if err != nil {
		return 0, 0, err
	}
	return uid, gid, nil
}

func id(e *ldap.Entry, attr string) (int64, error) {
	vs := e.GetAttributeValues(attr)
	if len(vs) != 1 {
		return 0, fmt.Errorf("%d values of %s (want 1; can the user read it?)", len(vs), attr)
	}
	n, err := strconv.ParseInt(vs[0], 10, 64)
	if err != nil || n < 0 || n > ldapauth.MaxID {
		return 0, fmt.Errorf("%s %q is not a uid or gid", attr, ldapauth.Clip(vs[0], 32))
	}
	return n, nil
}

// timeLimit is the server-side limit of a search, in whole seconds.
func timeLimit(r ldapauth.Request) int {
	return int(max(1, r.TimeoutMS/1000))
}

func failed(log string) ldapauth.Reply {
	return ldapauth.Reply{Reason: ldapauth.ReasonFailed, Log: log, UID: -1, GID: -1}
}

func unavailable(err error) ldapauth.Reply {
	return ldapauth.Reply{Reason: ldapauth.ReasonUnavailable, Log: err.Error(), UID: -1, GID: -1}
}
