// Command goproxy is the Go reference gateway of Pilotfish's benchmark: the standard library's
// httputil.ReverseProxy in front of one upstream, with a pooled keep-alive transport.
//
// Invariants: standard library only; one upstream; the pool keeps enough idle connections for the
// benchmark's 64 client connections, so no request pays for a new upstream connection once warm.
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:19203", "address to listen on")
	upstream := flag.String("upstream", "http://127.0.0.1:18081", "upstream base URL")
	flag.Parse()

	target, err := url.Parse(*upstream)
	if err != nil {
		log.Fatalf("bad upstream %q: %v", *upstream, err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	server := &http.Server{Addr: *listen, Handler: proxy, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(server.ListenAndServe())
}
