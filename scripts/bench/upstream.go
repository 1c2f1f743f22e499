package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// upstreamBody is the JSON the upstream serves: a feed page of about 1 KiB, the same bytes on
// every request (scenario 1 answers it with respond).
func upstreamBody() string {
	type item struct {
		ID     int    `json:"id"`
		Title  string `json:"title"`
		Author string `json:"author"`
		Likes  int    `json:"likes"`
	}
	var page struct {
		Data       []item `json:"data"`
		NextCursor string `json:"next_cursor"`
	}
	page.NextCursor = "Y3Vyc29yOjEwMjQ="
	for i := 1; ; i++ {
		page.Data = append(page.Data, item{ID: 1000 + i, Title: "Chapter " + strconv.Itoa(i) + " of a serial", Author: "author" + strconv.Itoa(i%7), Likes: i * 37 % 1000})
		if b, _ := json.Marshal(page); len(b) >= 1024 {
			return string(b)
		}
	}
}

// maxSlow bounds the delay /slow accepts.
const maxSlow = 10 * time.Second

// maxMaxAge bounds the max_age /data accepts: a day.
const maxMaxAge = 86400

// upstreamHandler serves
//
//	GET /data              the ~1 KiB JSON body, Cache-Control: public, max-age=300
//	GET /data?max_age=N    the same with max-age=N (0 to 86400): for caches primed before a
//	                       run longer than 300 s (4l, 4v)
//	GET /slow?ms=N         the same body after N ms (default 100, at most 10 s), not cacheable
func upstreamHandler() http.Handler {
	body := []byte(upstreamBody())
	mux := http.NewServeMux()
	write := func(w http.ResponseWriter, cacheControl string) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", cacheControl)
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}
	mux.HandleFunc("GET /data", func(w http.ResponseWriter, r *http.Request) {
		maxAge := "300"
		if v := r.URL.Query().Get("max_age"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > maxMaxAge {
				http.Error(w, "max_age must be an integer from 0 to 86400", http.StatusBadRequest)
				return
			}
			maxAge = strconv.Itoa(n)
		}
		write(w, "public, max-age="+maxAge)
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		d := 100 * time.Millisecond
		if v := r.URL.Query().Get("ms"); v != "" {
			ms, err := strconv.Atoi(v)
			if err != nil || ms < 0 || time.Duration(ms)*time.Millisecond > maxSlow {
				http.Error(w, "ms must be an integer from 0 to 10000", http.StatusBadRequest)
				return
			}
			d = time.Duration(ms) * time.Millisecond
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		write(w, "no-store")
	})
	return mux
}

// serveUpstream runs the upstream on addr, which must be a loopback address, until ctx ends.
func serveUpstream(ctx context.Context, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() || strings.Contains(host, ":") {
		return errors.New("upstream: listen on 127.0.0.1 only, got " + addr)
	}
	srv := &http.Server{
		Addr:              addr,
		Handler:           upstreamHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      maxSlow + 10*time.Second,
		IdleTimeout:       60 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
