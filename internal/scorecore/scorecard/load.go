package scorecard

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"gopkg.in/yaml.v3"

	scoringv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/scoring/v1"
)

//go:embed default.yaml
var defaultYAML []byte

// Default returns a fresh copy of the built-in scorecard (version 0), made for
// any product's events without configuration. It is parsed on every call, so callers own the result.
func Default() (*scoringv1.Scorecard, error) {
	sc, err := Parse(defaultYAML)
	if err != nil {
		return nil, fmt.Errorf("default scorecard: %w", err)
	}
	return sc, nil
}

// LoadFile reads a YAML scorecard from path and validates it; the error of an invalid
// scorecard is a ProblemsError listing every problem.
func LoadFile(path string) (*scoringv1.Scorecard, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load scorecard: %w", err)
	}
	sc, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load scorecard %s: %w", path, err)
	}
	if problems := Validate(sc); len(problems) > 0 {
		return nil, fmt.Errorf("load scorecard %s: %w", path, ProblemsError(problems))
	}
	return sc, nil
}

// Parse decodes a YAML scorecard without validating it. The YAML goes through JSON to
// protojson, so its field names are the proto's (snake_case or camelCase) and unknown
// fields are errors; short enum names (recency, onboarding) are expanded first.
func Parse(data []byte) (*scoringv1.Scorecard, error) {
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse scorecard YAML: %w", err)
	}
	sc := new(scoringv1.Scorecard)
	if doc == nil {
		return sc, nil
	}
	doc = jsonValue(doc)
	expandEnums(doc)
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("parse scorecard YAML: %w", err)
	}
	if err := protojson.Unmarshal(js, sc); err != nil {
		return nil, fmt.Errorf("parse scorecard: %w", err)
	}
	return sc, nil
}

// Marshal encodes a scorecard as YAML with proto field names, the form Parse reads.
func Marshal(sc *scoringv1.Scorecard) ([]byte, error) {
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(sc)
	if err != nil {
		return nil, fmt.Errorf("marshal scorecard: %w", err)
	}
	// Decoding the JSON into a node keeps protojson's field order (proto field
	// numbers), which reads far better than the sorted keys of a generic map.
	var node yaml.Node
	if err := yaml.Unmarshal(js, &node); err != nil {
		return nil, fmt.Errorf("marshal scorecard: %w", err)
	}
	blockStyle(&node)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&node); err != nil {
		return nil, fmt.Errorf("marshal scorecard: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal scorecard: %w", err)
	}
	return buf.Bytes(), nil
}

// blockStyle drops the JSON flow and quoting styles (the encoder still quotes the
// strings that would otherwise read as another type), and writes each point on one
// line with both its fields, which protojson leaves out when zero.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value != "points" {
			continue
		}
		for _, p := range n.Content[i+1].Content {
			p.Style = yaml.FlowStyle
			p.Content = []*yaml.Node{
				scalar("value"), pointField(p, "value"),
				scalar("score"), pointField(p, "score"),
			}
		}
	}
}

func pointField(point *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(point.Content); i += 2 {
		if point.Content[i].Value == key {
			return point.Content[i+1]
		}
	}
	return scalar("0")
}

func scalar(v string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: v}
}

// jsonValue turns a decoded YAML value into one encoding/json accepts: map keys
// become strings and non-finite floats the strings protojson reads for them.
func jsonValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = jsonValue(e)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = jsonValue(e)
		}
		return m
	case []any:
		for i, e := range v {
			v[i] = jsonValue(e)
		}
		return v
	case float64:
		switch {
		case math.IsNaN(v):
			return "NaN"
		case math.IsInf(v, 1):
			return "Infinity"
		case math.IsInf(v, -1):
			return "-Infinity"
		}
	}
	return v
}

// expandEnums rewrites short enum names in the places a scorecard has enums.
func expandEnums(doc any) {
	root, _ := doc.(map[string]any)
	expandKinds(root["measures"])
	for _, key := range []string{"stage_overrides", "stageOverrides"} {
		overrides, _ := root[key].([]any)
		for _, o := range overrides {
			o, _ := o.(map[string]any)
			if o == nil {
				continue
			}
			if s, ok := o["stage"].(string); ok {
				o["stage"] = enumName(s, "LIFECYCLE_STAGE_")
			}
			expandKinds(o["measures"])
		}
	}
}

func expandKinds(measures any) {
	list, _ := measures.([]any)
	for _, m := range list {
		if m, ok := m.(map[string]any); ok {
			if s, ok := m["kind"].(string); ok {
				m["kind"] = enumName(s, "MEASURE_KIND_")
			}
			if s, ok := m["scale"].(string); ok {
				m["scale"] = enumName(s, "SCALE_")
			}
		}
	}
}

// enumName maps "pre-renewal" or "Active Seat Ratio" to PREFIX_PRE_RENEWAL style names.
func enumName(s, prefix string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	s = strings.NewReplacer("-", "_", " ", "_").Replace(s)
	if !strings.HasPrefix(s, prefix) {
		s = prefix + s
	}
	return s
}
