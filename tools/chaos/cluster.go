package main

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// cluster is a 3-node NATS cluster with JetStream, in this process, on
// loopback ports, advertising loopback only.
type cluster struct {
	servers []*server.Server
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startCluster(dir string, n int) (*cluster, error) {
	clientPorts, routePorts := make([]int, n), make([]int, n)
	for i := range n {
		var err error
		if clientPorts[i], err = freePort(); err != nil {
			return nil, err
		}
		if routePorts[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	var routes []*url.URL
	for _, p := range routePorts {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	c := &cluster{}
	for i := range n {
		opts := &server.Options{
			ServerName:      fmt.Sprintf("chaos-%d", i),
			Host:            "127.0.0.1",
			Port:            clientPorts[i],
			ClientAdvertise: fmt.Sprintf("127.0.0.1:%d", clientPorts[i]),
			JetStream:       true,
			StoreDir:        filepath.Join(dir, fmt.Sprintf("n%d", i)),
			NoSigs:          true,
			MaxPayload:      8 << 20,
			Routes:          routes,
			Cluster: server.ClusterOpts{
				Name:        "chaos",
				Host:        "127.0.0.1",
				Port:        routePorts[i],
				NoAdvertise: true,
			},
		}
		s, err := server.NewServer(opts)
		if err != nil {
			c.shutdown()
			return nil, err
		}
		go s.Start()
		c.servers = append(c.servers, s)
	}
	for _, s := range c.servers {
		if !s.ReadyForConnections(30 * time.Second) {
			c.shutdown()
			return nil, fmt.Errorf("nats server %s not ready", s.Name())
		}
	}
	return c, nil
}

// urls is the client URL list of every node.
func (c *cluster) urls() string {
	var us []string
	for _, s := range c.servers {
		us = append(us, s.ClientURL())
	}
	return strings.Join(us, ",")
}

func (c *cluster) shutdown() {
	for _, s := range c.servers {
		s.Shutdown()
	}
	for _, s := range c.servers {
		s.WaitForShutdown()
	}
}
