// SPDX-License-Identifier: GPL-2.0-or-later

package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"github.com/xpra-proxy/xpra-proxy/ipc"
	"github.com/xpra-proxy/xpra-proxy/protocol/digest"
	"github.com/xpra-proxy/xpra-proxy/supervisor/limits"
)

// The hostile pre-auth harness plays a compromised pre-auth process: it
// holds the child's end of a real ipc socketpair (SOCK_SEQPACKET with
// SO_PASSCRED, as startPreauth makes it) and sends whatever it likes,
// with real memfds, pipes and sockets attached, while the supervisor's
// own exchange code (exchange.run: recv, checkTransport, the auth
// modules, authenticate, startRelay up to the per-user relay limit)
// answers on the other end. The supervisor is built by New from flags.
//
// A grant shows without exec'ing a relay: the harness's user (nobody)
// is at max-relays-per-user already, so a granted login reaches
// startRelay and is refused there with "too many connections", a reply
// nothing else produces.

// hostilePassword is the password of the password modules.
const hostilePassword = "secret"

// hostileUser is the account a grant is for: it exists everywhere.
const hostileUser = "nobody"

// logCount counts the supervisor's warnings and errors.
type logCount struct{ n *atomic.Int64 }

func (h logCount) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h logCount) Handle(context.Context, slog.Record) error    { h.n.Add(1); return nil }
func (h logCount) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h logCount) WithGroup(string) slog.Handler                { return h }

// hostileSupervisor builds the supervisor the harness talks to: password
// modules on unix and TCP listeners, ssl-auth none (a TLS claim must not
// reach it: no certificate is configured), nobody allowed as a session
// user and already at its one relay.
func hostileSupervisor(tb testing.TB, warnings *atomic.Int64) *Supervisor {
	tb.Helper()
	dir := tb.TempDir()
	worker := filepath.Join(dir, "xpra-proxy-worker")
	for _, p := range []string{worker, filepath.Join(dir, "xpra-proxy-preauth")} {
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	cfg, err := ParseFlags([]string{
		"--auth=password,value=" + hostilePassword, "--tcp-auth=password,value=" + hostilePassword,
		"--ssl-auth=none", "--worker=" + worker, "--run-dir=" + filepath.Join(dir, "run"),
		"--control-socket=off", "--html=off", "--max-uid=65534", "--max-relays-per-user=1",
	})
	if err != nil {
		tb.Fatal(err)
	}
	s, err := New(cfg, slog.New(logCount{warnings}))
	if err != nil {
		tb.Fatal(err)
	}
	// Closed now, not by a finalizer in the middle of a later exchange,
	// whose descriptor count it would change.
	tb.Cleanup(func() { s.set.front.Close() })
	// The harness is the pre-auth process: its messages come from this
	// process's pid and uid.
	s.preauth = &syscall.Credential{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())}
	s.userRelays.force(65534)
	return s
}

// hostileInput reads a fuzz input as a sequence of choices; past its end
// every choice is 0.
type hostileInput struct{ b []byte }

func (in *hostileInput) byte() byte {
	if len(in.b) == 0 {
		return 0
	}
	c := in.b[0]
	in.b = in.b[1:]
	return c
}

func (in *hostileInput) bytes() []byte {
	n := min(int(in.byte()), len(in.b))
	b := in.b[:n]
	in.b = in.b[n:]
	return b
}

func (in *hostileInput) pick(options ...string) string {
	c := int(in.byte())
	if c >= len(options) {
		return string(in.bytes())
	}
	return options[c]
}

func (in *hostileInput) list(options ...[]string) []string {
	c := int(in.byte())
	if c >= len(options) {
		var l []string
		for range in.byte() % 4 {
			l = append(l, string(in.bytes()))
		}
		return l
	}
	return options[c]
}

var hmacDigests = []string{"hmac+sha512", "hmac+sha384", "hmac+sha256", "hmac+sha224", "hmac+sha1", "hmac+md5", "hmac"}

// Ops of the hostile pre-auth process.
const (
	opBegin       = iota // an AuthBegin, fields chosen by the input
	opAnswer             // an AuthVerify with the right answer to the last challenge
	opWrongAnswer        // an AuthVerify with an answer from the input
	opRaw                // any bytes as a datagram
	opAnyKind            // a message of any kind with fields from the input
	opOversized          // a datagram over ipc.MaxMessage
	opForged             // an AuthBegin with forged credentials (another pid)
	opClose              // the process goes away
	opReplay             // the last datagram again, with what was attached
	opProxyHeader        // a ProxyHeader, its source chosen by the input
	opCount
)

// Attachments.
const (
	attachNone = iota
	attachMemfd
	attachPipe
	attachSocket
	attachTwo // two memfds
	attachCount
)

// hostilePeer is the pre-auth process's end and what it has seen.
type hostilePeer struct {
	t         testing.TB
	c         *net.UnixConn
	replies   chan ipc.Message
	challenge *ipc.Message
	last      []byte
	lastOOB   int
	closed    bool
	sent      int    // datagrams sent
	typ       string // listener type
	// offset: 1 once a ProxyHeader was taken (proxied connections):
	// the login's datagrams come one later.
	offset   int
	proper   bool // the first datagram was an AuthBegin for a grantable account
	wentAway bool // sent what reads as the end of the channel
	// answered: the second datagram was the right answer, with a memfd,
	// to a challenge the supervisor sent after a proper begin.
	answered bool
}

// goAway is the process leaving, as the supervisor sees it: its end
// reads the end of the channel. Replies sent before can still be read.
func (p *hostilePeer) goAway() {
	if !p.closed {
		p.closed = true
		if err := p.c.CloseWrite(); err != nil {
			p.t.Fatal(err)
		}
	}
}

func (p *hostilePeer) attach(kind int) (oob []byte, closeAll func()) {
	var files []int
	mk := func() int {
		fd, err := unix.MemfdCreate("handover", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			p.t.Fatal(err)
		}
		return fd
	}
	switch kind {
	case attachMemfd:
		files = []int{mk()}
	case attachTwo:
		files = []int{mk(), mk()}
	case attachPipe:
		var fds [2]int
		if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
			p.t.Fatal(err)
		}
		files = fds[:]
	case attachSocket:
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			p.t.Fatal(err)
		}
		files = fds[:1]
		defer unix.Close(fds[1])
	}
	if len(files) > 0 {
		oob = unix.UnixRights(files...)
	}
	return oob, func() {
		for _, fd := range files {
			unix.Close(fd)
		}
	}
}

// send sends one datagram and reports whether it left.
func (p *hostilePeer) send(b []byte, attach int, cred *unix.Ucred) bool {
	oob, done := p.attach(attach)
	defer done()
	if cred != nil {
		oob = append(oob, unix.UnixCredentials(cred)...)
	}
	if _, _, err := p.c.WriteMsgUnix(b, oob, nil); err != nil {
		if cred != nil && errors.Is(err, unix.EPERM) {
			return false // forging needs root; nothing was sent
		}
		p.t.Fatalf("sending %d bytes: %v", len(b), err)
	}
	p.last, p.lastOOB = b, attach
	p.sent++
	if p.sent == 1+p.offset && cred == nil {
		// Whichever op made it: the first datagram, read as the
		// supervisor reads it, asks for an account and a transport that
		// may be granted, with nothing attached.
		var m ipc.Message
		p.proper = attach == attachNone && json.Unmarshal(b, &m) == nil && m.Kind == ipc.AuthBegin &&
			m.Username == hostileUser && (m.Transport == "" || m.Transport == p.typ || (p.typ == "tcp" && m.Transport == "ws"))
	}
	if len(b) == 0 && p.sent <= 2+p.offset {
		// An empty datagram reads as the end of the channel: the
		// kernel returns 0 bytes for both.
		p.wentAway = true
	}
	return true
}

func (p *hostilePeer) message(m ipc.Message, attach int) bool {
	b, err := json.Marshal(m)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.send(b, attach, nil)
}

func (p *hostilePeer) begin(in *hostileInput) ipc.Message {
	return ipc.Message{Kind: ipc.AuthBegin,
		Username:    in.pick(hostileUser, "", "root", hostileUser+"\x00x", "xpra-proxy", "no body"),
		Transport:   in.pick("", "tcp", "unix", "ssl", "wss", "ws", "TCP"),
		Digests:     in.list(hmacDigests, []string{"xor"}, nil, []string{"hmac+md5"}, []string{"des"}),
		SaltDigests: in.list(hmacDigests[:6], []string{"xor"}, nil, []string{"hmac"}),
		Display:     in.pick("", ":10"),
	}
}

// answer is the right AuthVerify for the last challenge (a wrong one if
// there was none).
func (p *hostilePeer) answer() ipc.Message {
	m := ipc.Message{Kind: ipc.AuthVerify}
	c := p.challenge
	if c == nil {
		c = &ipc.Message{Salt: digest.NewServerSalt(), Digest: "hmac+sha256", SaltDigest: "hmac+sha256"}
	}
	var err error
	if m.ClientSalt, err = digest.NewClientSalt(c.SaltDigest, len(c.Salt)); err != nil {
		m.ClientSalt = []byte("0123456789abcdef0123456789abcdef")
	}
	combined, err := digest.CombineSalts(c.SaltDigest, m.ClientSalt, c.Salt)
	if err == nil {
		m.Response, _ = digest.Response(c.Digest, []byte(hostilePassword), combined)
	}
	return m
}

// step plays one op: whether a datagram left, and whether the sequence
// goes on.
func (p *hostilePeer) step(in *hostileInput) (sent, more bool) {
	op := int(in.byte()) % opCount
	attach := int(in.byte()) % attachCount
	switch op {
	case opBegin:
		sent = p.message(p.begin(in), attach)
	case opAnswer:
		// The right answer, as the second datagram, with a memfd and a
		// challenge to answer: the one sequence that must be granted.
		right := p.sent == 1+p.offset && p.challenge != nil && p.proper && (attach == attachMemfd || attach == attachTwo)
		sent = p.message(p.answer(), attach)
		if right {
			p.answered = sent
		}
	case opWrongAnswer:
		sent = p.message(ipc.Message{Kind: ipc.AuthVerify, Response: in.bytes(), ClientSalt: in.bytes()}, attach)
	case opRaw:
		sent = p.send(in.bytes(), attach, nil)
	case opAnyKind:
		m := ipc.Message{Kind: in.pick(ipc.Connection, ipc.AuthBegin, ipc.Challenge, ipc.NoChallenge, ipc.Denied,
			ipc.AuthVerify, ipc.Accepted, ipc.Status, ipc.StatusReply, ipc.Stop, ipc.Stopping,
			ipc.StartSession, ipc.SessionStarted, ipc.StopSession, ipc.SessionStopped, ipc.ProxyHeader, ipc.ProxyAccepted),
			Username: string(in.bytes()), Transport: string(in.bytes()), Peer: string(in.bytes()),
			Response: in.bytes(), Worker: int(in.byte()), Mode: string(in.bytes())}
		sent = p.message(m, attach)
	case opOversized:
		sent = p.send(make([]byte, ipc.MaxMessage+1+int(in.byte())), attach, nil)
	case opForged:
		b, _ := json.Marshal(p.begin(in))
		sent = p.send(b, attach, &unix.Ucred{Pid: 1, Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())})
	case opClose:
		p.goAway()
		return false, false
	case opProxyHeader:
		sent = p.message(ipc.Message{Kind: ipc.ProxyHeader, Peer: in.pick("192.0.2.7:5000", "[2001:db8::7]:5000", "192.0.2.7",
			"", "x:y", "[fe80::1%eth0]:1", "[::ffff:192.0.2.8]:1")}, attach)
	case opReplay:
		if p.last != nil {
			sent = p.send(p.last, p.lastOOB, nil)
		}
	}
	return sent, len(in.b) > 0
}

// hostileResult is what one exchange came to.
type hostileResult struct {
	granted  bool // the supervisor went to start a relay
	answered bool // the harness gave the right answer the right way
	denied   bool // a Denied reply came
	warned   bool // the supervisor logged a warning or an error
	ended    bool // the supervisor ended the exchange, not the harness
	wentAway bool // the harness sent what reads as its end
	messages int  // datagrams the supervisor may have read (at most 2 count)
}

// runHostile plays in against one exchange of s on a real socketpair and
// returns what happened; it fails t if the exchange neither answers nor
// ends within 10 s of a message.
func runHostile(t testing.TB, s *Supervisor, warnings *atomic.Int64, in []byte) hostileResult {
	sup, childEnd, err := ipc.Pair()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.FileConn(childEnd)
	childEnd.Close()
	if err != nil {
		t.Fatal(err)
	}
	input := &hostileInput{b: in}
	typ, peer := "tcp", "127.0.0.1:4711"
	first := input.byte()
	if first&1 == 1 {
		typ, peer = "unix", "unix:/run/xpra/hostile"
	}
	// Bit 1 on tcp: the peer is a trusted load balancer, whose PROXY
	// header's source (ProxyHeader) must come first.
	proxied := typ == "tcp" && first&2 != 0
	warnings.Store(0)
	// A fresh limiter per input: penalties from one input must not
	// decide the next.
	if s.limits, err = limits.New(s.cfg.Limits(), nil, nil); err != nil {
		t.Fatal(err)
	}
	x := exchange{s: s, set: s.set, log: s.log, ipc: sup, pid: os.Getpid(), typ: typ, peer: peer, proxied: proxied}
	done := make(chan struct{})
	go func() {
		defer close(done)
		x.run()
	}()
	p := &hostilePeer{t: t, c: nc.(*net.UnixConn), typ: typ, replies: make(chan ipc.Message, 4)}
	read := make(chan struct{})
	go func() {
		defer close(read)
		p.read()
	}()
	var res hostileResult
	note := func(m ipc.Message) {
		switch m.Kind {
		case ipc.Challenge:
			p.challenge = &m
		case ipc.ProxyAccepted:
			p.offset = 1
		case ipc.Denied:
			res.denied = true
			res.granted = res.granted || m.Reason == "too many connections"
		}
	}
	over := false
	for more := true; !over && more; {
		var sent bool
		if sent, more = p.step(input); !sent {
			continue
		}
		// Every message gets an answer or ends the exchange.
		select {
		case m := <-p.replies:
			note(m)
		case <-done:
			over = true
		case <-time.After(10 * time.Second):
			t.Fatalf("the supervisor neither answered nor ended within 10 s after %d messages", p.sent)
		}
	}
	res.ended = over
	p.goAway()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the exchange did not end within 10 s of the pre-auth process going away")
	}
	// As handle does once the exchange is over; the reader then takes
	// the last replies and sees the channel close.
	sup.Close()
	<-read
	p.c.Close()
	for len(p.replies) > 0 {
		note(<-p.replies)
	}
	res.granted = res.granted || x.accepted != 0
	res.answered = p.answered
	res.warned = warnings.Load() > 0
	res.messages = p.sent
	res.wentAway = p.wentAway
	return res
}

// hostileReadBuf is the harness's receive buffer, one at a time: a new
// 64 KiB per input was a sixth of the harness's CPU (clearing it).
var hostileReadBuf = make([]byte, ipc.MaxMessage+1)

// read passes the supervisor's replies on until the channel closes.
func (p *hostilePeer) read() {
	buf := hostileReadBuf
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		n, oobn, _, _, err := p.c.ReadMsgUnix(buf, oob)
		if oobn > 0 {
			msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
			for _, cm := range msgs {
				fds, _ := unix.ParseUnixRights(&cm)
				for _, fd := range fds {
					unix.Close(fd)
				}
			}
		}
		if err != nil || n == 0 {
			return
		}
		var m ipc.Message
		if err := json.Unmarshal(buf[:n], &m); err != nil {
			p.t.Errorf("the supervisor sent %q: %v", buf[:n], err)
			return
		}
		p.replies <- m
	}
}

// openFds lists this process's descriptors and what each is.
func openFds(t testing.TB) map[string]string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := make(map[string]string, len(ents))
	for _, e := range ents {
		fds[e.Name()], _ = os.Readlink("/proc/self/fd/" + e.Name())
	}
	return fds
}

// checkHostile runs one input and checks the invariants: a grant only
// for the right answer, and the right answer always granted; every other
// sequence that the supervisor ends refused (a Denied reply or a logged
// warning): only a process that goes away may end it silently; no descriptor and no goroutine left behind.
func checkHostile(t *testing.T, s *Supervisor, warnings *atomic.Int64, in []byte) {
	fds, goroutines := openFds(t), runtime.NumGoroutine()
	var res hostileResult
	fuzzcheck.Bounded(t, 4<<20, func() { res = runHostile(t, s, warnings, in) })
	switch {
	case res.granted && !res.answered:
		t.Fatalf("granted without the right answer (%+v)", res)
	case res.answered && !res.granted:
		t.Fatalf("the right answer was not granted (%+v)", res)
	case !res.granted && res.ended && !res.wentAway && !res.denied && !res.warned:
		t.Fatalf("a hostile sequence ended without a refusal or a warning (%+v)", res)
	}
	// A descriptor open now that was not before is a leak; one closed
	// meanwhile is some earlier garbage's finalizer. An empty link is the
	// directory openFds read, closed by the time it was looked at.
	after := openFds(t)
	for fd, link := range after {
		if was, ok := fds[fd]; link != "" && (!ok || was != link) {
			t.Fatalf("descriptor %s (%s) left open by the exchange:\nafter  %v\nbefore %v", fd, link, after, fds)
		}
	}
	for i := 0; runtime.NumGoroutine() > goroutines; i++ {
		if i == 200 {
			t.Fatalf("%d goroutines 2 s after the exchange, %d before", runtime.NumGoroutine(), goroutines)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hostileSeeds are the sequences of the list, as inputs: the
// first byte picks the listener (even: tcp), then op, attachment and the
// op's choices.
var hostileSeeds = map[string][]byte{
	"right answer":                  {0, opBegin, 0, 0, 0, 0, 0, 0, opAnswer, attachMemfd},
	"right answer on unix":          {1, opBegin, 0, 0, 0, 0, 0, 0, opAnswer, attachMemfd},
	"wrong answer":                  {0, opBegin, 0, 0, 0, 0, 0, 0, opWrongAnswer, attachMemfd, 3, 'a', 'b', 'c', 2, 'x', 'y'},
	"verify without memfd":          {0, opBegin, 0, 0, 0, 0, 0, 0, opAnswer, attachNone},
	"verify with a pipe":            {0, opBegin, 0, 0, 0, 0, 0, 0, opAnswer, attachPipe},
	"verify with a socket":          {0, opBegin, 0, 0, 0, 0, 0, 0, opAnswer, attachSocket},
	"verify with two memfds":        {0, opBegin, 0, 0, 0, 0, 0, 0, opAnswer, attachTwo},
	"verify first":                  {0, opAnswer, attachMemfd},
	"second begin":                  {0, opBegin, 0, 0, 0, 0, 0, 0, opBegin, 0, 0, 0, 0, 0, 0},
	"replayed begin":                {0, opBegin, 0, 0, 0, 0, 0, 0, opReplay, 0},
	"claims ssl without tls":        {0, opBegin, 0, 0, 3, 0, 0, 0, opAnswer, attachMemfd},
	"claims wss without tls":        {0, opBegin, 0, 0, 4, 0, 0, 0, opAnswer, attachMemfd},
	"claims tcp on unix":            {1, opBegin, 0, 0, 1, 0, 0, 0, opAnswer, attachMemfd},
	"username with nul":             {0, opBegin, 0, 3, 0, 0, 0, 0, opAnswer, attachMemfd},
	"root":                          {0, opBegin, 0, 2, 0, 0, 0, 0, opAnswer, attachMemfd},
	"the pre-auth user":             {0, opBegin, 0, 4, 0, 0, 0, 0, opAnswer, attachMemfd},
	"xor digest only":               {0, opBegin, 0, 0, 0, 1, 0, 0, opAnswer, attachMemfd},
	"no salt digest":                {0, opBegin, 0, 0, 0, 0, 2, 0, opAnswer, attachMemfd},
	"fd with the begin":             {0, opBegin, attachMemfd, 0, 0, 0, 0, 0, opAnswer, attachMemfd},
	"oversized":                     {0, opOversized, 0, 7},
	"garbage":                       {0, opRaw, 0, 5, '{', '"', 'k', 'i', 'n'},
	"not json with an fd":           {0, opRaw, attachPipe, 3, 0xff, 0xfe, 0},
	"forged pid":                    {0, opForged, 0, 0, 0, 0, 0, 0},
	"stop from pre-auth":            {0, opAnyKind, 0, 9, 0, 0, 0, 0, 0, 0},
	"accepted from pre-auth":        {0, opBegin, 0, 0, 0, 0, 0, 0, opAnyKind, 0, 6, 0, 0, 0, 0, 0, 0},
	"goes away after the challenge": {0, opBegin, 0, 0, 0, 0, 0, 0, opClose},
	"goes away at once":             {0, opClose},
	// From a trusted load balancer (first byte 2): the header's source first.
	"proxied: right answer":           {2, opProxyHeader, 0, 0, opBegin, 0, 0, 0, 0, 0, 0, opAnswer, attachMemfd},
	"proxied: right answer over IPv6": {2, opProxyHeader, 0, 1, opBegin, 0, 0, 0, 0, 0, 0, opAnswer, attachMemfd},
	"proxied: begin without a header": {2, opBegin, 0, 0, 0, 0, 0, 0, opAnswer, attachMemfd},
	"proxied: source without a port":  {2, opProxyHeader, 0, 2, opBegin, 0, 0, 0, 0, 0, 0, opAnswer, attachMemfd},
	"proxied: source with a zone":     {2, opProxyHeader, 0, 5, opBegin, 0, 0, 0, 0, 0, 0, opAnswer, attachMemfd},
	"proxied: header with an fd":      {2, opProxyHeader, attachMemfd, 0, opBegin, 0, 0, 0, 0, 0, 0, opAnswer, attachMemfd},
	"proxied: two headers":            {2, opProxyHeader, 0, 0, opProxyHeader, 0, 0, opAnswer, attachMemfd},
	"header on a direct connection":   {0, opProxyHeader, 0, 0, opBegin, 0, 0, 0, 0, 0, 0, opAnswer, attachMemfd},
	"proxy-accepted from pre-auth":    {2, opAnyKind, 0, 16, 0, 0, 0, 0, 0, 0},
}

// FuzzHostilePreauth drives the supervisor's exchange with arbitrary
// sequences of ipc messages from a compromised pre-auth process.
func FuzzHostilePreauth(f *testing.F) {
	var warnings atomic.Int64
	s := hostileSupervisor(f, &warnings)
	for _, in := range hostileSeeds {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkHostile(t, s, &warnings, in[:min(len(in), 4096)])
	})
}

// TestHostilePreauth runs the hostile sequences by name, with
// what each must come to.
func TestHostilePreauth(t *testing.T) {
	var warnings atomic.Int64
	s := hostileSupervisor(t, &warnings)
	for name, in := range hostileSeeds {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			checkHostile(t, s, &warnings, in)
			res := runHostile(t, s, &warnings, in)
			if want := strings.Contains(name, "right answer") || name == "verify with two memfds"; res.granted != want {
				t.Fatalf("granted %v, want %v (%+v)", res.granted, want, res)
			}
		})
	}
}
