package websocket

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// acceptGUID is RFC 6455's key suffix for Sec-WebSocket-Accept.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptKey is the Sec-WebSocket-Accept value for a client's key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// Limits on the server's handshake response: xpra's is a dozen short lines.
const (
	maxResponseLine    = 4096
	maxResponseHeaders = 64
)

// ErrHandshake reports a handshake response that does not accept ours.
var ErrHandshake = errors.New("websocket: handshake refused")

// Dial performs the client handshake on an established connection.
func Dial(ctx context.Context, nc net.Conn, host, path string) (*Conn, error) {
	if path == "" {
		path = "/"
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := nc.SetDeadline(dl); err != nil {
			return nil, fmt.Errorf("websocket: %w", err)
		}
		defer nc.SetDeadline(time.Time{})
	}
	var nonce [16]byte
	_, _ = rand.Read(nonce[:]) // crypto/rand.Read does not fail on Linux
	key := base64.StdEncoding.EncodeToString(nonce[:])
	u := url.URL{Path: path}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Protocol: " + Subprotocol + "\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return nil, fmt.Errorf("websocket: handshake with %s: %w", host, err)
	}
	// Frames the server sends right behind its response stay in br's
	// read-ahead, which NewConn keeps.
	br := bufio.NewReaderSize(nc, maxResponseLine)
	if err := readResponse(br, key); err != nil {
		return nil, fmt.Errorf("websocket: handshake with %s: %w", host, err)
	}
	return NewConn(nc, br, true), nil
}

// readResponse reads the server's handshake response and checks that it
// switches to the websocket protocol with our key and subprotocol (RFC
// 6455 §4.1, the client's checks).
func readResponse(br *bufio.Reader, key string) error {
	line, err := readLine(br)
	if err != nil {
		return err
	}
	// "HTTP/1.1 101 Switching Protocols"
	proto, rest, _ := strings.Cut(line, " ")
	code, _, _ := strings.Cut(rest, " ")
	if !strings.HasPrefix(proto, "HTTP/1.") || proto == "HTTP/1.0" {
		return fmt.Errorf("%w: status line %q", ErrHandshake, line)
	}
	if code != "101" {
		if n, err := strconv.Atoi(code); err == nil {
			return fmt.Errorf("%w: unexpected HTTP response status: %d", ErrHandshake, n)
		}
		return fmt.Errorf("%w: status line %q", ErrHandshake, line)
	}
	var upgrade, connection, accept, protocol bool
	for i := 0; ; i++ {
		if i == maxResponseHeaders {
			return fmt.Errorf("%w: more than %d header lines", ErrHandshake, maxResponseHeaders)
		}
		line, err := readLine(br)
		if err != nil {
			return err
		}
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("%w: malformed header line %q", ErrHandshake, line)
		}
		v = strings.Trim(v, " \t")
		switch strings.ToLower(k) {
		case "upgrade":
			if upgrade = strings.EqualFold(v, "websocket"); !upgrade {
				return fmt.Errorf("%w: Upgrade: %q", ErrHandshake, v)
			}
		case "connection":
			if connection = strings.EqualFold(v, "upgrade"); !connection {
				return fmt.Errorf("%w: Connection: %q", ErrHandshake, v)
			}
		case "sec-websocket-accept":
			if accept = v == acceptKey(key); !accept {
				return fmt.Errorf("%w: wrong Sec-WebSocket-Accept", ErrHandshake)
			}
		case "sec-websocket-protocol":
			if protocol = v == Subprotocol; !protocol {
				return fmt.Errorf("%w: server chose subprotocol %q, want %q", ErrHandshake, v, Subprotocol)
			}
		}
	}
	switch {
	case !upgrade:
		return fmt.Errorf("%w: no Upgrade: websocket", ErrHandshake)
	case !connection:
		return fmt.Errorf("%w: no Connection: Upgrade", ErrHandshake)
	case !accept:
		return fmt.Errorf("%w: no Sec-WebSocket-Accept", ErrHandshake)
	case !protocol:
		return fmt.Errorf("%w: server chose subprotocol %q, want %q", ErrHandshake, "", Subprotocol)
	}
	return nil
}

// readLine reads one CRLF (or LF) terminated line of at most
// maxResponseLine bytes, without its terminator.
func readLine(br *bufio.Reader) (string, error) {
	b, err := br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return "", fmt.Errorf("%w: a response line longer than %d bytes", ErrHandshake, maxResponseLine)
	case err == io.EOF:
		return "", io.ErrUnexpectedEOF
	case err != nil:
		return "", err
	}
	return string(bytes.TrimSuffix(b[:len(b)-1], []byte("\r"))), nil
}
