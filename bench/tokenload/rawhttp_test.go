package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The raw connection reads every way net/http frames an answer — Content-Length, chunked
// (a body larger than net/http's buffer, flushed in pieces), and Connection: close — keeps
// one connection alive across requests, and dials again after the server closed it.
func TestRawConn(t *testing.T) {
	var conns atomic.Int64
	big := strings.Repeat("0123456789abcdef", 1024) // 16 KiB: chunked
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/oauth2/token" || r.Header.Get("Content-Type") != formContentType {
			http.Error(rw, "bad request line or head", http.StatusTeapot)
			return
		}
		switch string(body) {
		case "small":
			rw.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(rw, `{"access_token":"x"}`)
		case "big":
			for i := 0; i < len(big); i += 4096 {
				_, _ = io.WriteString(rw, big[i:i+4096])
				rw.(http.Flusher).Flush()
			}
		case "close":
			rw.Header().Set("Connection", "close")
			rw.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(rw, "bye")
		default:
			http.Error(rw, "unknown body "+string(body), http.StatusBadRequest)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)

	rc, err := newRawConn(srv.URL+"/oauth2/token", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.close()
	var buf bytes.Buffer
	for i := range 50 {
		status, err := rc.post([]byte("small"), &buf)
		if err != nil || status != http.StatusOK || buf.String() != `{"access_token":"x"}` {
			t.Fatalf("request %d: %d %q %v", i, status, buf.String(), err)
		}
	}
	status, err := rc.post([]byte("big"), &buf)
	if err != nil || status != http.StatusOK || buf.String() != big {
		t.Fatalf("chunked answer: %d, %d bytes, %v", status, buf.Len(), err)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 51 requests, want one kept alive", n)
	}
	status, err = rc.post([]byte("close"), &buf)
	if err != nil || status != http.StatusServiceUnavailable || buf.String() != "bye" || rc.c != nil {
		t.Fatalf("Connection: close answer: %d %q %v, connection kept: %v", status, buf.String(), err, rc.c != nil)
	}
	status, err = rc.post([]byte("other"), &buf)
	if err != nil || status != http.StatusBadRequest || !strings.Contains(buf.String(), "unknown body other") {
		t.Fatalf("after the close: %d %q %v", status, buf.String(), err)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want a second one after the server closed the first", n)
	}
}

// Answers that are not HTTP are errors, not silent successes.
func TestReadAnswerMalformed(t *testing.T) {
	for _, in := range []string{
		"SMTP 220 hello\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
	} {
		var buf bytes.Buffer
		if _, _, err := readAnswer(bufio.NewReader(strings.NewReader(in)), &buf); err == nil {
			t.Errorf("readAnswer(%q) = nil error", in)
		}
	}
	var buf bytes.Buffer
	status, keep, err := readAnswer(bufio.NewReader(strings.NewReader("HTTP/1.0 200 OK\r\n\r\nuntil the end")), &buf)
	if err != nil || status != 200 || keep || buf.String() != "until the end" {
		t.Fatalf("HTTP/1.0 answer without a length: %d keep=%v %q %v", status, keep, buf.String(), err)
	}
}
