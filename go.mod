module github.com/xpra-proxy/xpra-proxy

go 1.26

require (
	github.com/andybalholm/brotli v1.2.8
	github.com/pierrec/lz4/v4 v4.1.33
)

require (
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/gobwas/ws v1.5.0 // indirect
)
