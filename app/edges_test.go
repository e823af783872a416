package app_test

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lodestar-cs/lodestar/app"
	"github.com/lodestar-cs/lodestar/pkg/cache"
	"github.com/lodestar-cs/lodestar/pkg/config"
	"github.com/lodestar-cs/lodestar/services/ingest"
)

// TestHTTPEdges: /metrics, which names tenants and their volumes, is served
// on the admin listener only; a client trickling its body is cut off at the
// read timeout instead of holding a connection forever (issue 13, items 6
// and 8).
func TestHTTPEdges(t *testing.T) {
	var admin, public string
	in := start(t, cache.RedisConfig{}, func(c *app.Config) {
		c.Targets = config.StringList{ingest.Target}
		c.HTTP.ReadTimeout, c.HTTP.WriteTimeout = 500*time.Millisecond, 5*time.Second
		admin, public = c.HTTP.AdminListenAddr, c.HTTPListenAddr
	})

	t.Run("metrics on the admin listener only", func(t *testing.T) {
		for addr, want := range map[string]int{public: http.StatusNotFound, admin: http.StatusOK} {
			resp, err := http.Get("http://" + addr + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s/metrics: %d, want %d", addr, resp.StatusCode, want)
			}
			if want == http.StatusOK && !strings.Contains(string(body), "# TYPE") {
				t.Errorf("admin /metrics is not a Prometheus exposition: %.200s", body)
			}
		}
	})

	t.Run("slow body cut off", func(t *testing.T) {
		conn, err := net.Dial("tcp", public)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		auth := base64.StdEncoding.EncodeToString([]byte(in.writeKey + ":"))
		fmt.Fprintf(conn, "POST /v1/batch HTTP/1.1\r\nHost: lodestar\r\nAuthorization: Basic %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", auth)
		stop := make(chan struct{})
		defer close(stop)
		go func() { // a byte every 50 ms: 100 KB would take 83 minutes
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := conn.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		}()
		// The deadline only keeps a broken server from hanging the test; the
		// server's read timeout is 30 times shorter.
		_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the server still waits for the trickled body after 15 s")
			}
			return // closed without an answer: cut off as well
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("trickled body answered %d, want 408", resp.StatusCode)
		}
	})
}
