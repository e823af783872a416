package cache

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/lodestar-cs/lodestar/pkg/config"
)

// RedisConfig says which Redis holds the cache: one server, or a Redis
// Cluster. Empty, it names none, and the runner uses the in-process cache.
type RedisConfig struct {
	// Addrs are host:port addresses: one server's, or seed nodes of a
	// cluster (any of its nodes; the client learns the rest).
	Addrs config.StringList
	// URL is a redis:// or rediss:// URL, for credentials, TLS and client
	// options (go-redis's ParseURL and, for a cluster, ParseClusterURL, which
	// takes more seeds as addr= parameters). Its host is the first address
	// and Addrs add to it.
	URL string
	// Cluster makes a single address a cluster's seed; several addresses
	// always are.
	Cluster bool
}

// RegisterFlags registers the configuration as -<prefix>.* flags (the
// runner's prefix is "redis").
func (c *RedisConfig) RegisterFlags(prefix string, fs *flag.FlagSet) {
	fs.Var(&c.Addrs, prefix+".addrs", "Comma-separated Redis addresses (host:port) for hot scores: one server, or seed nodes of a Redis Cluster (two or more always are); empty with no -"+prefix+".url uses an in-process cache.")
	fs.StringVar(&c.URL, prefix+".url", c.URL, "Redis URL (redis:// or rediss://, with user, password and go-redis options as query parameters); its host is the first address, -"+prefix+".addrs adds more.")
	fs.BoolVar(&c.Cluster, prefix+".cluster", c.Cluster, "Treat a single Redis address as a Redis Cluster seed node (several addresses always are).")
	// The single address flag before -redis.addrs: refused with its new
	// name, so that a deployment still setting it (or its environment
	// twin) stops at start instead of running on an in-process cache.
	fs.Func(prefix+".addr", "Renamed -"+prefix+".addrs; setting it is an error.", func(string) error {
		return fmt.Errorf("renamed -%s.addrs", prefix)
	})
}

// Enabled reports whether a Redis is configured.
func (c RedisConfig) Enabled() bool { return len(c.Addrs) > 0 || c.URL != "" }

// IsCluster reports whether the configuration names a Redis Cluster: with
// -redis.cluster, or more than one address (counting the URL's host and
// its addr= parameters).
func (c RedisConfig) IsCluster() bool {
	n := len(c.Addrs)
	if c.URL != "" {
		n++
		if u, err := url.Parse(c.URL); err == nil {
			n += len(u.Query()["addr"])
		}
	}
	return c.Cluster || n > 1
}

// Validate reports a configuration NewClient cannot use.
func (c RedisConfig) Validate() error {
	if c.Cluster && !c.Enabled() {
		return errors.New("-redis.cluster needs -redis.addrs or -redis.url")
	}
	if c.URL == "" {
		return nil
	}
	client, err := c.NewClient()
	if err != nil {
		return err
	}
	return client.Close()
}

// NewClient returns a client of the configured Redis: a *redis.ClusterClient
// for a cluster, a *redis.Client otherwise. It connects lazily, on the first
// command.
func (c RedisConfig) NewClient() (redis.UniversalClient, error) {
	if !c.Enabled() {
		return nil, errors.New("no redis configured: give -redis.addrs or -redis.url")
	}
	if c.URL == "" {
		return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: slices.Clone(c.Addrs), IsClusterMode: c.IsCluster()}), nil
	}
	if !c.IsCluster() {
		o, err := redis.ParseURL(c.URL)
		if err != nil {
			return nil, fmt.Errorf("-redis.url: %w", err)
		}
		return redis.NewClient(o), nil
	}
	o, err := redis.ParseClusterURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("-redis.url: %w", err)
	}
	// ParseClusterURL ignores the path: a cluster has database 0 only, so
	// another one is refused rather than silently not used.
	if u, err := url.Parse(c.URL); err == nil && strings.Trim(u.Path, "/") != "" && strings.Trim(u.Path, "/") != "0" {
		return nil, fmt.Errorf("-redis.url: a Redis Cluster has database 0 only, not %q", strings.Trim(u.Path, "/"))
	}
	o.Addrs = append(o.Addrs, c.Addrs...)
	return redis.NewClusterClient(o), nil
}
