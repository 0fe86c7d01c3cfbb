// SPDX-License-Identifier: GPL-2.0-or-later

package digest

import (
	"bytes"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
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
