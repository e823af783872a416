// Package deploy_test checks deploy/'s compose file and Kubernetes manifests
// against the lodestar binary: every flag and LODESTAR_* variable they set
// exists and the configuration validates, probes ask the gRPC port, each
// PodDisruptionBudget selects its Deployment, and the replica counts are the
// documented ones. It is a module of its own (run with GOWORK=off, as `make
// test` does) so that the Kubernetes API types stay out of Lodestar's
// go.mod.
package deploy_test

import (
	"bytes"
	"flag"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/lodestar-cs/lodestar/app"
	"github.com/lodestar-cs/lodestar/pkg/config"
)

// replicas are the replica counts deploy/ promises (issue 14), on
// Kubernetes and in compose: scoring and churn-alert scale out, and
// renewal-forecast runs once. Compose runs one ingest, on the host's ports.
var replicas = map[string]struct{ kubernetes, compose int32 }{
	"ingest":           {2, 1},
	"scoring":          {3, 3},
	"churn-alert":      {2, 2},
	"renewal-forecast": {1, 1},
}

// parseLodestar parses a process's arguments and environment as cmd/lodestar
// does, and validates the result. It fails on a LODESTAR_* variable that is
// no flag's twin, which config.Parse would ignore.
func parseLodestar(t *testing.T, where string, args []string, env map[string]string) app.Config {
	t.Helper()
	cfg := app.DefaultConfig()
	fs := flag.NewFlagSet("lodestar", flag.ContinueOnError)
	fs.SetOutput(&bytes.Buffer{})
	cfg.RegisterFlags(fs)
	twins := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { twins[config.EnvName(f.Name)] = true })
	for name := range env {
		if strings.HasPrefix(name, config.EnvPrefix) && !twins[name] {
			t.Errorf("%s: %s is no flag's environment twin", where, name)
		}
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := config.Parse(fs, args, lookup); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("%s: %v", where, err)
	}
	return cfg
}

func port(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return int32(n)
}

// manifests are the Kubernetes objects of deploy/kubernetes, decoded
// strictly (an unknown field is an error).
type manifests struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	pdbs        map[string]*policyv1.PodDisruptionBudget
	configMaps  map[string]*corev1.ConfigMap
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	var kustomization struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	readYAML(t, "kubernetes/kustomization.yaml", &kustomization)
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && b != "nats-values.yaml" {
			want = append(want, b)
		}
	}
	if got := slices.Sorted(slices.Values(kustomization.Resources)); !slices.Equal(got, want) {
		t.Errorf("kustomization resources %v, want every manifest: %v", got, want)
	}

	m := manifests{
		deployments: map[string]*appsv1.Deployment{},
		services:    map[string]*corev1.Service{},
		pdbs:        map[string]*policyv1.PodDisruptionBudget{},
		configMaps:  map[string]*corev1.ConfigMap{},
	}
	for _, f := range kustomization.Resources {
		b, err := os.ReadFile(filepath.Join("kubernetes", f))
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range bytes.Split(b, []byte("\n---\n")) {
			var meta metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			var name string
			switch meta.Kind {
			case "Deployment":
				name = decode(t, f, doc, m.deployments)
			case "Service":
				name = decode(t, f, doc, m.services)
			case "PodDisruptionBudget":
				name = decode(t, f, doc, m.pdbs)
			case "ConfigMap":
				name = decode(t, f, doc, m.configMaps)
			default:
				t.Fatalf("%s: unexpected kind %q", f, meta.Kind)
			}
			if name == "" {
				t.Errorf("%s: a %s without a name", f, meta.Kind)
			}
		}
	}
	return m
}

// decode decodes an object of doc strictly into its kind's map, by name.
func decode[T any, P interface {
	*T
	GetName() string
}](t *testing.T, file string, doc []byte, into map[string]P) string {
	t.Helper()
	obj := P(new(T))
	unmarshalStrict(t, file, doc, obj)
	into[obj.GetName()] = obj
	return obj.GetName()
}

func unmarshalStrict(t *testing.T, file string, doc []byte, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	unmarshalStrict(t, file, b, v)
}

// TestKubernetes checks the Kubernetes manifests.
func TestKubernetes(t *testing.T) {
	m := loadManifests(t)
	natsReplicas := natsClusterSize(t)
	for name, n := range replicas {
		d := m.deployments[name]
		if d == nil {
			t.Errorf("no Deployment %s", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			got := int32(1) // Kubernetes' default
			if d.Spec.Replicas != nil {
				got = *d.Spec.Replicas
			}
			if got != n.kubernetes {
				t.Errorf("replicas %d, want %d", got, n.kubernetes)
			}
			pod := labels.Set(d.Spec.Template.Labels)
			sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
			if err != nil || sel.Empty() || !sel.Matches(pod) {
				t.Fatalf("selector %v does not select the pod template's labels %v (%v)", d.Spec.Selector, pod, err)
			}
			checkProcess(t, m, d, natsReplicas)
			checkPDB(t, m, d)
			checkService(t, m, d)
		})
	}
}

// checkProcess parses the Lodestar container's flags and environment and
// checks the probes and ports against them.
func checkProcess(t *testing.T, m manifests, d *appsv1.Deployment, natsReplicas int) {
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want the one lodestar", len(spec.Containers))
	}
	c := spec.Containers[0]
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			t.Fatalf("envFrom %v: only ConfigMaps are checked", from)
		}
		cm := m.configMaps[from.ConfigMapRef.Name]
		if cm == nil {
			t.Fatalf("envFrom: no ConfigMap %s", from.ConfigMapRef.Name)
		}
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	cfg := parseLodestar(t, d.Name, append(slices.Clone(c.Command), c.Args...), env)
	if got := cfg.Targets.String(); got != d.Name {
		t.Errorf("-target %s, want %s", got, d.Name)
	}
	if cfg.Limits.Replicas > natsReplicas {
		t.Errorf("-nats.replicas %d, but the NATS cluster has %d nodes", cfg.Limits.Replicas, natsReplicas)
	}
	if !cfg.Redis.Enabled() {
		t.Error("no -redis.addrs: each process would have its own in-process cache")
	}
	if cfg.NATSURL == "" {
		t.Error("no -nats.url: each process would run its own embedded NATS")
	}

	grpcPort := port(t, cfg.GRPCListenAddr)
	if i := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "grpc" }); i < 0 || c.Ports[i].ContainerPort != grpcPort {
		t.Errorf("container port grpc: %v, want %d", c.Ports, grpcPort)
	}
	if p := c.ReadinessProbe; p == nil || p.GRPC == nil || p.GRPC.Port != grpcPort || p.GRPC.Service != nil && *p.GRPC.Service != "" {
		t.Errorf("readiness probe %+v: want gRPC health (overall) on %d", p, grpcPort)
	}
	if p := c.LivenessProbe; p == nil || p.TCPSocket == nil || p.TCPSocket.Port.IntValue() != int(grpcPort) {
		t.Errorf("liveness probe %+v: want the gRPC port %d", p, grpcPort)
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || float64(*g) <= cfg.ShutdownGrace.Seconds() {
		t.Errorf("termination grace %v s is not longer than -shutdown.grace %v", g, cfg.ShutdownGrace)
	}
	mounted := map[string]bool{}
	for _, v := range c.VolumeMounts {
		mounted[v.MountPath] = true
	}
	for _, dir := range []string{filepath.Dir(cfg.TenantsFile), cfg.DataDir} {
		if !mounted[dir] {
			t.Errorf("%s is not a volume mount: %v", dir, c.VolumeMounts)
		}
	}
}

// checkPDB checks that a Deployment of several replicas has a budget that
// selects its pods, and only them, and lets one go at a time.
func checkPDB(t *testing.T, m manifests, d *appsv1.Deployment) {
	var mine []*policyv1.PodDisruptionBudget
	for _, p := range m.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil {
			t.Fatalf("PDB %s: %v", p.Name, err)
		}
		if !sel.Empty() && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			mine = append(mine, p)
		}
	}
	n := int32(1)
	if d.Spec.Replicas != nil {
		n = *d.Spec.Replicas
	}
	if n == 1 {
		if len(mine) > 0 {
			t.Errorf("a PodDisruptionBudget for a single replica blocks every drain")
		}
		return
	}
	if len(mine) != 1 {
		t.Fatalf("%d PodDisruptionBudgets select the pods, want 1", len(mine))
	}
	p := mine[0].Spec
	switch {
	case p.MaxUnavailable != nil:
		if v := p.MaxUnavailable.IntValue(); p.MaxUnavailable.StrVal != "" || v < 1 || int32(v) >= n {
			t.Errorf("maxUnavailable %v: want from 1 to %d replicas", p.MaxUnavailable, n-1)
		}
	case p.MinAvailable != nil:
		if v := p.MinAvailable.IntValue(); p.MinAvailable.StrVal != "" || v < 1 || int32(v) >= n {
			t.Errorf("minAvailable %v: want from 1 to %d replicas", p.MinAvailable, n-1)
		}
	default:
		t.Error("PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
	}
}

// checkService checks that the Deployment's Service selects its pods and
// sends gRPC to the gRPC port.
func checkService(t *testing.T, m manifests, d *appsv1.Deployment) {
	s := m.services[d.Name]
	if s == nil {
		t.Fatalf("no Service %s", d.Name)
	}
	if sel := labels.SelectorFromSet(s.Spec.Selector); len(s.Spec.Selector) == 0 || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("Service selector %v does not select the pods", s.Spec.Selector)
	}
	for name := range m.deployments {
		if other := m.deployments[name]; other != d && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(other.Spec.Template.Labels)) {
			t.Errorf("Service selector %v selects %s's pods too", s.Spec.Selector, name)
		}
	}
	named := map[string]bool{}
	for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
		named[p.Name] = true
	}
	grpc := false
	for _, p := range s.Spec.Ports {
		if !named[p.TargetPort.StrVal] {
			t.Errorf("Service port %s: target %v is no named container port", p.Name, p.TargetPort)
		}
		grpc = grpc || p.TargetPort.StrVal == "grpc"
	}
	if !grpc {
		t.Error("the Service has no port to gRPC")
	}
}

// natsClusterSize reads the NATS Helm chart values: JetStream on, and the
// cluster's size.
func natsClusterSize(t *testing.T) int {
	t.Helper()
	var v struct {
		Config struct {
			Cluster struct {
				Enabled  bool `json:"enabled"`
				Replicas int  `json:"replicas"`
			} `json:"cluster"`
			JetStream struct {
				Enabled bool `json:"enabled"`
			} `json:"jetstream"`
		} `json:"config"`
	}
	b, err := os.ReadFile("kubernetes/nats-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &v); err != nil { // the chart's values are many: not strict
		t.Fatal(err)
	}
	if !v.Config.Cluster.Enabled || v.Config.Cluster.Replicas < 3 || !v.Config.JetStream.Enabled {
		t.Errorf("NATS values: cluster %+v, jetstream %+v: want a JetStream cluster of 3 or more", v.Config.Cluster, v.Config.JetStream)
	}
	return v.Config.Cluster.Replicas
}

// TestCompose checks deploy/compose.yaml.
func TestCompose(t *testing.T) {
	var compose struct {
		Services map[string]struct {
			Image       string            `json:"image"`
			Command     []string          `json:"command"`
			Environment map[string]string `json:"environment"`
			Deploy      struct {
				Replicas *int32 `json:"replicas"`
			} `json:"deploy"`
		} `json:"services"`
	}
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	nats := 0
	for _, s := range compose.Services {
		if strings.HasPrefix(s.Image, "nats:") {
			nats++
		}
	}
	for name, n := range replicas {
		s, ok := compose.Services[name]
		if !ok {
			t.Errorf("no service %s", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			got := int32(1)
			if s.Deploy.Replicas != nil {
				got = *s.Deploy.Replicas
			}
			if got != n.compose {
				t.Errorf("replicas %d, want %d", got, n.compose)
			}
			cfg := parseLodestar(t, name, s.Command, s.Environment)
			if got := cfg.Targets.String(); got != name {
				t.Errorf("-target %s, want %s", got, name)
			}
			if cfg.Limits.Replicas > nats {
				t.Errorf("-nats.replicas %d, but compose runs %d NATS servers", cfg.Limits.Replicas, nats)
			}
			for _, u := range strings.Split(cfg.NATSURL, ",") {
				host := strings.Split(strings.TrimPrefix(u, "nats://"), ":")[0]
				if _, ok := compose.Services[host]; !ok {
					t.Errorf("-nats.url %s: no service %s", u, host)
				}
			}
			for _, a := range cfg.Redis.Addrs {
				if host, _, _ := net.SplitHostPort(a); compose.Services[host].Image == "" {
					t.Errorf("-redis.addrs %s: no service %s", a, host)
				}
			}
		})
	}
}
