// Package receivers runs real local endpoints for tests: an HTTP server
// recording what Slack, PagerDuty and webhook deliveries post, and a small
// SMTP server on 127.0.0.1 recording the mail it accepts.
package receivers

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// Request is one request an HTTP receiver got.
type Request struct {
	Header http.Header
	Body   []byte
	At     time.Time
}

// HTTP records requests and answers with the status respond picks for the
// n-th request (from 0).
type HTTP struct {
	URL     string
	respond func(n int, body []byte) int

	mu   sync.Mutex
	reqs []Request
	got  chan struct{}
}

// NewHTTP starts a receiver; respond nil answers 202 to everything.
func NewHTTP(t testing.TB, respond func(n int, body []byte) int) *HTTP {
	t.Helper()
	if respond == nil {
		respond = func(int, []byte) int { return http.StatusAccepted }
	}
	h := &HTTP{respond: respond, got: make(chan struct{}, 1)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		n := len(h.reqs)
		h.reqs = append(h.reqs, Request{Header: r.Header.Clone(), Body: body, At: time.Now()})
		h.mu.Unlock()
		select {
		case h.got <- struct{}{}:
		default:
		}
		w.WriteHeader(h.respond(n, body))
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL
	return h
}

// Requests returns what was received so far.
func (h *HTTP) Requests() []Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Request(nil), h.reqs...)
}

// Wait waits until at least n requests arrived.
func (h *HTTP) Wait(t testing.TB, n int, timeout time.Duration) []Request {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if rs := h.Requests(); len(rs) >= n {
			return rs
		}
		select {
		case <-h.got:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%d requests after %s, want %d", len(h.Requests()), timeout, n)
		}
	}
}

// Mail is one message the SMTP receiver accepted, decoded.
type Mail struct {
	From    string
	To      []string
	Header  mail.Header
	Subject string
	Body    string
}

// SMTP is a minimal SMTP server: EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
type SMTP struct {
	Addr string
	mu   sync.Mutex
	mail []Mail
}

// NewSMTP starts a receiver on 127.0.0.1:0.
func NewSMTP(t testing.TB) *SMTP {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &SMTP{Addr: l.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.session(t, c) })
		}
	})
	return s
}

func (s *SMTP) session(t testing.TB, c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	tp := textproto.NewConn(c)
	reply := func(format string, args ...any) { _ = tp.PrintfLine(format, args...) }
	reply("220 127.0.0.1 ESMTP test receiver")
	var m Mail
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			reply("250-127.0.0.1")
			reply("250 8BITMIME")
		case "MAIL":
			m = Mail{From: addr(arg)}
			reply("250 2.1.0 OK")
		case "RCPT":
			m.To = append(m.To, addr(arg))
			reply("250 2.1.5 OK")
		case "DATA":
			reply("354 end with <CR><LF>.<CR><LF>")
			data, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			if err := m.decode(data); err != nil {
				t.Errorf("smtp receiver: undecodable message: %v", err)
			}
			s.mu.Lock()
			s.mail = append(s.mail, m)
			s.mu.Unlock()
			reply("250 2.0.0 queued")
		case "RSET", "NOOP":
			reply("250 2.0.0 OK")
		case "QUIT":
			reply("221 2.0.0 bye")
			return
		default:
			reply("502 5.5.2 not implemented")
		}
	}
}

// addr takes the address out of "FROM:<a@b>".
func addr(arg string) string {
	_, a, _ := strings.Cut(arg, ":")
	a, _, _ = strings.Cut(strings.TrimSpace(a), " ")
	return strings.Trim(a, "<>")
}

func (m *Mail) decode(data []byte) error {
	msg, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		return err
	}
	m.Header = msg.Header
	if m.Subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err != nil {
		return err
	}
	body := io.Reader(msg.Body)
	if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		body = quotedprintable.NewReader(body)
	}
	b, err := io.ReadAll(body)
	m.Body = strings.ReplaceAll(string(b), "\r\n", "\n")
	return err
}

// Mails returns the messages accepted so far.
func (s *SMTP) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mail...)
}

// Wait waits until at least n messages arrived.
func (s *SMTP) Wait(t testing.TB, n int, timeout time.Duration) []Mail {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ms := s.Mails(); len(ms) >= n {
			return ms
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%d mails after %s, want %d", len(s.Mails()), timeout, n)
	return nil
}
