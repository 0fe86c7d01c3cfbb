// SPDX-License-Identifier: GPL-2.0-or-later

// Package preauth is the whole pre-auth stage of a connection, the code of
// xpra-proxy-preauth: the only code that reads an unauthenticated
// client's bytes. It runs unprivileged (the xpra-proxy user) and never
// sees a stored secret.
//
//   - front.go: what arrived on a TCP port (plain xpra, TLS, WebSocket,
//     WSS, HTTP for the HTML5 client, other traffic for --tcp-proxy),
//     terminated here (the protocols themselves are in preauth/transport);
//   - login.go: the hello and the password challenge, relayed between the
//     client and the supervisor (which alone decides), then the hand-over;
//   - pump.go: after authentication, TLS and WebSocket connections stay in
//     this process, which carries their plain stream for the relay worker;
//   - stage.go: the process's life as a warm spare, from the supervisor's
//     hand-over of an accepted connection to its end.
//
// It lives in its own binary so that relay workers, one per connection,
// do not carry TLS termination, the certificate and key, and the HTTP
// server.
package preauth
