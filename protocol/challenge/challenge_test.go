package challenge

import (
	"bytes"
	"encoding/hex"
	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"os/exec"
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/protocol/rencode"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

func seq(from, to int) []byte {
	b := make([]byte, 0, to-from)
	for i := from; i < to; i++ {
		b = append(b, byte(i))
	}
	return b
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// TV6, TV6b and TV7 of PROTOCOL.md §10.
func TestVectors(t *testing.T) {
	S, C := seq(0, 32), seq(32, 64)
	K, err := CombineSalts("hmac+sha256", C, S)
	if err != nil || string(K) != "a27b86e7a70a029cba778d6f738d952696d6d8361b95103dd84ae9df6af063af" {
		t.Fatalf("TV6 K = %s, %v", K, err)
	}
	R, _ := Response("hmac+sha256", []byte("secret"), K)
	if string(R) != "b253f23a31294c3e11fdbe5f6647daa82590c0c3bb729e827d4f3b89302285c5" {
		t.Fatalf("TV6 R = %s", R)
	}
	if !Verify("hmac+sha256", []byte("secret"), K, R) || Verify("hmac+sha256", []byte("Secret"), K, R) {
		t.Fatal("TV6 verification")
	}

	// TV6b: a real xpra 3.1.3 client's answer.
	C6b := unhex("5415b77805a01f2ca0f0b5c656742cabd791fc38aa1465a6d0452de3c3fb8f10")
	K6b, _ := CombineSalts("hmac+sha256", C6b, S)
	if !Verify("hmac+sha256", []byte("secret"), K6b, []byte("9ae8d7e9c0998eb8cf448ac534af3bdb85b70bd9bc0db18bf218dcce31a06757")) {
		t.Fatal("TV6b: the real client's response does not verify")
	}

	// TV7: xor.
	X, _ := Response(XOR, []byte("secret"), K)
	if !bytes.Equal(X, unhex("12 57 54 10 5d 42")) {
		t.Fatalf("TV7 R = % x", X)
	}
	if got := RecoverXorPassword(X, K); string(got) != "secret" {
		t.Fatalf("TV7 recovered %q", got)
	}
}

// TestAgainstXpra compares every digest with xpra 3.1.3's gendigest.
func TestAgainstXpra(t *testing.T) {
	py := testenv.PythonModules(t, "xpra.net.digest")
	key, msg := []byte("pässword"), seq(0, 64)
	for _, d := range Supported() {
		t.Run(d, func(t *testing.T) {
			script := "import sys; from xpra.net.digest import gendigest; v = gendigest(sys.argv[1], bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])); sys.stdout.write((v.encode() if isinstance(v, str) else v).hex())"
			out, err := exec.Command(py, "-c", script, d, hex.EncodeToString(key), hex.EncodeToString(msg)).Output()
			if err != nil {
				t.Fatalf("python: %v", err)
			}
			got, err := Compute(d, key, msg)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got) != strings.TrimSpace(string(out)) {
				t.Fatalf("ours %x, xpra %s", got, out)
			}
		})
	}
}

func TestChooseDigest(t *testing.T) {
	tests := []struct {
		offered []string
		want    string
	}{
		{Supported(), "hmac+sha512"},
		{[]string{"xor", "hmac"}, "hmac"},
		{[]string{"xor", "des"}, "xor"},
		{[]string{"hmac+sha1", "hmac+sha256"}, "hmac+sha256"},
	}
	for _, tc := range tests {
		if got, err := ChooseDigest(tc.offered, ServerOrder); err != nil || got != tc.want {
			t.Errorf("ChooseDigest(%v) = %q, %v; want %q", tc.offered, got, err, tc.want)
		}
	}
	if _, err := ChooseDigest([]string{"kerberos"}, ServerOrder); err == nil {
		t.Error("no common digest must fail")
	}
	for _, d := range SupportedSalt() {
		if !strings.HasPrefix(d, "hmac+") {
			t.Errorf("salt digest %q offered", d)
		}
	}
}

func TestClientSalt(t *testing.T) {
	if s, err := NewClientSalt("hmac+sha256", 64); err != nil || len(s) != 32 {
		t.Fatalf("hmac client salt: %d %v", len(s), err)
	}
	if s, err := NewClientSalt(XOR, 64); err != nil || len(s) != 64 {
		t.Fatalf("xor client salt: %d %v", len(s), err)
	}
	if _, err := NewClientSalt(XOR, 8); err == nil {
		t.Fatal("xor salt with a short server salt")
	}
	if _, err := NewClientSalt("rot13", 64); err == nil {
		t.Fatal("unknown salt digest")
	}
	if n := len(Padding(64)); n != 448 {
		t.Fatalf("padding %d, want 448", n)
	}
	if n := len(Padding(600)); n != 32 {
		t.Fatalf("padding %d, want 32", n)
	}
	a, b := NewServerSalt(), NewServerSalt()
	if len(a) != ServerSaltLen || bytes.Equal(a, b) {
		t.Fatal("server salts must be fresh 64-byte values")
	}
}

func TestParseChallenge(t *testing.T) {
	salt := seq(0, 32)
	tests := []struct {
		name string
		p    []any
		ok   bool
		want Challenge
	}{
		{"3.1 no cipher", []any{[]byte("challenge"), salt, []byte(""), []byte("hmac+sha256"), []byte("hmac+sha256"), []byte("password")}, true,
			Challenge{ServerSalt: salt, CipherCaps: "", Digest: "hmac+sha256", SaltDigest: "hmac+sha256", Prompt: "password"}},
		{"6.x empty dict", []any{"challenge", salt, value.Dict{}, "xor", "hmac+sha512", "password for user 'a'"}, true,
			Challenge{ServerSalt: salt, CipherCaps: value.Dict{}, Digest: "xor", SaltDigest: "hmac+sha512", Prompt: "password for user 'a'"}},
		{"old server", []any{"challenge", salt}, true, Challenge{ServerSalt: salt, Digest: "hmac", SaltDigest: "xor", Prompt: "password"}},
		{"no salt", []any{"challenge"}, false, Challenge{}},
		{"short salt", []any{"challenge", []byte("abc")}, false, Challenge{}},
		{"int salt", []any{"challenge", int64(5)}, false, Challenge{}},
		{"bad cipher", []any{"challenge", salt, int64(1)}, false, Challenge{}},
		{"bad digest", []any{"challenge", salt, "", []any{}}, false, Challenge{}},
		{"long prompt", []any{"challenge", salt, "", "xor", "xor", strings.Repeat("p", 300)}, false, Challenge{}},
		{"not a challenge", []any{"hello", salt}, false, Challenge{}},
	}
	for _, tc := range tests {
		got, err := ParseChallenge(tc.p)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", tc.name, err)
			continue
		}
		if tc.ok && (!bytes.Equal(got.ServerSalt, tc.want.ServerSalt) || got.Digest != tc.want.Digest ||
			got.SaltDigest != tc.want.SaltDigest || got.Prompt != tc.want.Prompt) {
			t.Errorf("%s: got %+v", tc.name, got)
		}
	}
	c := Challenge{ServerSalt: salt, Digest: "u2f:xor", SaltDigest: "hmac+sha256", Prompt: "password"}
	if c.Method() != "u2f" {
		t.Errorf("Method = %q", c.Method())
	}
	back, err := ParseChallenge(c.Packet())
	if err != nil || back.Digest != c.Digest || back.CipherCaps != "" {
		t.Errorf("Packet round trip: %+v %v", back, err)
	}
}

// FuzzParseChallenge decodes arbitrary rencode and parses it as a
// challenge, as a client (or our proxy) does with what a server sends.
func FuzzParseChallenge(f *testing.F) {
	b, _ := rencode.Encode(Challenge{ServerSalt: seq(0, 32), Digest: "hmac+sha256", SaltDigest: "hmac+sha256", Prompt: "password"}.Packet(), rencode.Legacy)
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzcheck.Bounded(t, 1<<20, func() {
			v, err := rencode.Decode(in, rencode.Legacy)
			if err != nil {
				return
			}
			p, ok := v.([]any)
			if !ok {
				return
			}
			c, err := ParseChallenge(p)
			if err != nil {
				return
			}
			if len(c.ServerSalt) < minSalt || len(c.Digest) > maxField {
				t.Fatalf("accepted %+v", c)
			}
			if Known(c.Method()) {
				cs, err := NewClientSalt("hmac+sha256", len(c.ServerSalt))
				if err != nil {
					t.Fatal(err)
				}
				k, _ := CombineSalts("hmac+sha256", cs, c.ServerSalt)
				if _, err := Response(c.Method(), []byte("pw"), k); err != nil {
					t.Fatal(err)
				}
			}
		})
	})
}
