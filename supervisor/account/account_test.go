// SPDX-License-Identifier: GPL-2.0-or-later

package account

import (
	"errors"
	"os/user"
	"strings"
	"testing"
)

func TestValidUsername(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"", true},
		{"alice", true},
		{"Alice.Smith", true},
		{"bob_2", true},
		{"a-b", true},
		{"alice@example.org", true},
		{"host$", true},
		{strings.Repeat("a", MaxUsernameLen), true},
		{strings.Repeat("a", MaxUsernameLen+1), false},
		{strings.Repeat("a", 10000), false},
		{"secaudita\x00junk", false},
		{"alice\n", false},
		{"alice\r\nbob", false},
		{"al ice", false},
		{"-alice", false},
		{".alice", false},
		{"$", false},
		{"a$b", false},
		{"al/ice", false},
		{"al:ice", false},
		{"\xff\xfe", false},
		{"élise", false},
		{"tab\there", false},
		{"\x1b[31m", false},
	} {
		err := ValidUsername(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidUsername(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrRefused) {
			t.Errorf("ValidUsername(%q): %v does not wrap ErrRefused", tc.name, err)
		}
	}
}

func TestParseLoginDefs(t *testing.T) {
	for _, tc := range []struct {
		file   string
		lo, hi int
	}{
		{"", 1000, 60000},
		{"UID_MIN 500\nUID_MAX 30000\n", 500, 30000},
		{"# UID_MIN 5\nUID_MIN\t\t 2000\n", 2000, 60000},
		{"UID_MIN x\nSYS_UID_MIN 100\n", 1000, 60000},
		{"UID_MIN -5\n", 1000, 60000},
	} {
		lo, hi := ParseLoginDefs(strings.NewReader(tc.file), 1000, 60000)
		if lo != tc.lo || hi != tc.hi {
			t.Errorf("ParseLoginDefs(%q) = %d, %d; want %d, %d", tc.file, lo, hi, tc.lo, tc.hi)
		}
	}
}

func TestCheck(t *testing.T) {
	base := Policy{MinUID: 1000, MaxUID: 60000, Reserved: []string{"xpra-proxy", "xpra-proxy-control"}}
	alice := Account{Name: "alice", UID: 1001, GID: 1001, Groups: []string{"alice", "users"}, GIDs: []int{1001, 100}}
	with := func(p Policy, f func(*Policy)) Policy { f(&p); return p }
	acct := func(f func(*Account)) Account {
		a := alice
		a.Groups = append([]string(nil), alice.Groups...)
		a.GIDs = append([]int(nil), alice.GIDs...)
		f(&a)
		return a
	}
	for _, tc := range []struct {
		what string
		p    Policy
		a    Account
		ok   bool
	}{
		{"an ordinary user", base, alice, true},
		{"root", base, acct(func(a *Account) { a.Name, a.UID, a.GID, a.GIDs = "root", 0, 0, []int{0} }), false},
		{"gid 0", base, acct(func(a *Account) { a.GID, a.GIDs = 0, append(a.GIDs, 0) }), false},
		{"daemon, uid 1", base, acct(func(a *Account) { a.Name, a.UID, a.GID, a.GIDs = "daemon", 1, 1, []int{1} }), false},
		{"nobody, above max-uid", base, acct(func(a *Account) { a.Name, a.UID, a.GID, a.GIDs = "nobody", 65534, 65534, []int{65534} }), false},
		{"a reserved name with an ordinary uid", base, acct(func(a *Account) { a.Name = "xpra-proxy-control" }), false},
		{"a gid the account does not have", base, acct(func(a *Account) { a.GID = 42 }), false},
		{"a supplementary gid the account has", base, acct(func(a *Account) { a.GID = 100 }), true},
		{"min-uid raised above", with(base, func(p *Policy) { p.MinUID = 2000 }), alice, false},
		{"deny-users match", with(base, func(p *Policy) { p.DenyUsers = []string{"al*"} }), alice, false},
		{"deny-users other", with(base, func(p *Policy) { p.DenyUsers = []string{"bob"} }), alice, true},
		{"allow-users match", with(base, func(p *Policy) { p.AllowUsers = []string{"bob", "a?ice"} }), alice, true},
		{"allow-users no match", with(base, func(p *Policy) { p.AllowUsers = []string{"bob"} }), alice, false},
		{"deny wins over allow", with(base, func(p *Policy) { p.AllowUsers, p.DenyUsers = []string{"alice"}, []string{"alice"} }), alice, false},
		{"allow-groups match", with(base, func(p *Policy) { p.AllowGroups = []string{"users"} }), alice, true},
		{"allow-groups no match", with(base, func(p *Policy) { p.AllowGroups = []string{"xpra-users"} }), alice, false},
		{"deny-groups match", with(base, func(p *Policy) { p.DenyGroups = []string{"use*"} }), alice, false},
		{"zero policy", Policy{}, alice, false},
	} {
		err := tc.p.Check(tc.a)
		if (err == nil) != tc.ok {
			t.Errorf("%s: Check = %v, want ok=%v", tc.what, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v does not wrap ErrRefused", tc.what, err)
		}
	}
}

func TestCheckPatterns(t *testing.T) {
	if err := (Policy{MinUID: 1000, MaxUID: 60000, AllowUsers: []string{"a["}}).CheckPatterns(); err == nil {
		t.Error("a malformed pattern passed")
	}
	if err := (Policy{MinUID: 0, MaxUID: 60000}).CheckPatterns(); err == nil {
		t.Error("min-uid 0 passed")
	}
	if err := (Policy{MinUID: 1000, MaxUID: 60000, DenyGroups: []string{"wheel", "adm*"}}).CheckPatterns(); err != nil {
		t.Errorf("a good policy: %v", err)
	}
}

// Lookup reads the real passwd and group databases.
func TestLookupRoot(t *testing.T) {
	a, err := Lookup(0, 0)
	if err != nil {
		t.Fatalf("Lookup(0, 0): %v", err)
	}
	if a.Name != "root" || len(a.GIDs) == 0 || a.GIDs[0] != 0 {
		t.Fatalf("Lookup(0, 0) = %+v", a)
	}
	if err := Defaults().Check(a); err == nil {
		t.Fatal("root passed the default policy")
	}
	if _, err := user.LookupId("4000000000"); err == nil {
		t.Skip("uid 4000000000 exists here")
	}
	if _, err := Lookup(4000000000, 1000); !errors.Is(err, ErrRefused) {
		t.Fatalf("Lookup of an uid without passwd entry: %v, want ErrRefused", err)
	}
}
