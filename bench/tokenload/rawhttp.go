package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"
)

// rawConn is one keep-alive HTTP/1.1 connection that sends token requests and reads
// their answers with as little work as HTTP allows: the request head is formatted once,
// the answer head is scanned for the status, Content-Length, chunked transfer coding and
// Connection: close only. The load loop uses one per worker so that this program's CPU,
// which shares the machine with the server, goes to the server (net/http's client spends
// several times as much per request).
type rawConn struct {
	addr    string // host:port
	head    []byte // "POST … Content-Length: " — the length and body follow
	timeout time.Duration

	c   net.Conn
	br  *bufio.Reader
	req []byte // head + length + body, reused
}

func newRawConn(endpoint string, timeout time.Duration) (*rawConn, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("raw load connections speak plain http, not %s", u.Scheme)
	}
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nAccept: application/json\r\nContent-Length: ",
		u.RequestURI(), u.Host, formContentType)
	return &rawConn{addr: u.Host, head: []byte(head), timeout: timeout}, nil
}

func (r *rawConn) close() {
	if r.c != nil {
		_ = r.c.Close()
		r.c, r.br = nil, nil
	}
}

// post sends one request with body and reads the whole answer's body into buf (at most
// 64 KiB kept). A connection that failed or that the server closes is dialled again on
// the next call.
func (r *rawConn) post(body []byte, buf *bytes.Buffer) (int, error) {
	if r.c == nil {
		c, err := net.DialTimeout("tcp", r.addr, r.timeout)
		if err != nil {
			return 0, err
		}
		r.c, r.br = c, bufio.NewReaderSize(c, 16<<10)
	}
	r.req = append(r.req[:0], r.head...)
	r.req = strconv.AppendInt(r.req, int64(len(body)), 10)
	r.req = append(r.req, "\r\n\r\n"...)
	r.req = append(r.req, body...)
	if err := r.c.SetDeadline(time.Now().Add(r.timeout)); err != nil {
		r.close()
		return 0, err
	}
	if _, err := r.c.Write(r.req); err != nil {
		r.close()
		return 0, err
	}
	status, keep, err := readAnswer(r.br, buf)
	if err != nil || !keep {
		r.close()
	}
	return status, err
}

var errBadAnswer = errors.New("malformed HTTP answer")

// readAnswer reads one HTTP/1.1 answer: its status, whether the connection stays open,
// and its body into buf.
func readAnswer(br *bufio.Reader, buf *bytes.Buffer) (status int, keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, fmt.Errorf("%w: status line %q", errBadAnswer, line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("%w: status line %q", errBadAnswer, line)
	}
	keep = line[7] == '1' // HTTP/1.1 keeps the connection unless told otherwise
	length, chunked := int64(-1), false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return status, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return status, false, fmt.Errorf("%w: header line %q", errBadAnswer, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return status, false, fmt.Errorf("%w: Content-Length %q", errBadAnswer, value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	buf.Reset()
	switch {
	case chunked:
		err = readChunked(br, buf)
	case length >= 0:
		err = keepSome(buf, br, length)
	default: // the body runs until the server closes the connection
		keep = false
		err = readToEOF(buf, br)
	}
	return status, keep && err == nil, err
}

// readChunked reads a chunked body (RFC 9112 §7.1), without trailers it does not expect.
func readChunked(br *bufio.Reader, buf *bytes.Buffer) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		size, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		n, err := strconv.ParseInt(string(bytes.TrimSpace(size)), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: chunk size %q", errBadAnswer, line)
		}
		if n == 0 {
			for { // trailer lines, then the empty line
				line, err = br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if err := keepSome(buf, br, n); err != nil {
			return err
		}
		if line, err = br.ReadSlice('\n'); err != nil || len(bytes.TrimRight(line, "\r\n")) != 0 {
			return fmt.Errorf("%w: no line end after a chunk", errBadAnswer)
		}
	}
}

// keepSome reads n bytes of body, keeping the first 64 KiB in buf.
func keepSome(buf *bytes.Buffer, br *bufio.Reader, n int64) error {
	for n > 0 {
		if br.Buffered() == 0 {
			if _, err := br.Peek(1); err != nil {
				return err
			}
		}
		b, _ := br.Peek(int(min(n, int64(br.Buffered()))))
		keep(buf, b)
		_, _ = br.Discard(len(b))
		n -= int64(len(b))
	}
	return nil
}

// maxKept is how much of an answer's body is kept.
const maxKept = 64 << 10

// keep appends p to buf until it holds maxKept bytes.
func keep(buf *bytes.Buffer, p []byte) {
	if room := maxKept - buf.Len(); room > 0 {
		buf.Write(p[:min(len(p), room)])
	}
}

// readToEOF reads a body that ends with the connection.
func readToEOF(buf *bytes.Buffer, br *bufio.Reader) error {
	for {
		err := keepSome(buf, br, int64(max(br.Buffered(), 1)))
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
