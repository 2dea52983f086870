// Command argocd-health evaluates a resource health check the way the Argo CD application controller
// does: the script becomes the argocd-cm override for its group and kind (a lua.ResourceHealthOverrides
// entry, useOpenLibs off unless asked), and each object goes through gitops-engine's
// health.GetResourceHealth, as controller/health.go calls it. Objects are read from YAML or JSON files
// and decoded as the controller's watch decodes them (integers stay int64).
//
// It prints one JSON line per file: {"file", "status", "message"} and "error" when the check failed
// (gitops-engine then reports status Unknown with the error as message). It exits 1 only when it
// cannot run: a file that cannot be read or decoded, or a bad flag.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/lua"
	"github.com/argoproj/gitops-engine/pkg/health"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

type result struct {
	File    string `json:"file"`
	Status  string `json:"status"`
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

func main() {
	script := flag.String("script", "", "the health.lua to evaluate (required)")
	group := flag.String("group", "ecrtag.dev", "API group the script is the override for")
	kind := flag.String("kind", "EcrImageTag", "kind the script is the override for")
	openLibs := flag.Bool("use-open-libs", false, "as argocd-cm's resource.customizations.useOpenLibs.<group>_<kind>")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s -script health.lua object.yaml...\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if *script == "" || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	source, err := os.ReadFile(*script)
	if err != nil {
		fail(err)
	}
	// The key argo-cd's settings give an argocd-cm entry resource.customizations.health.<group>_<kind>.
	key := lua.GetConfigMapKey(schema.GroupVersionKind{Group: *group, Kind: *kind})
	overrides := lua.ResourceHealthOverrides{
		key: v1alpha1.ResourceOverride{HealthLua: string(source), UseOpenLibs: *openLibs},
	}
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	for _, path := range flag.Args() {
		obj, err := readObject(path)
		if err != nil {
			fail(fmt.Errorf("%s: %w", path, err))
		}
		got := result{File: path}
		status, err := health.GetResourceHealth(obj, overrides)
		if err != nil {
			got.Error = err.Error()
		}
		if status != nil {
			got.Status, got.Message = string(status.Status), status.Message
		}
		if err := out.Encode(got); err != nil {
			fail(err)
		}
	}
}

// readObject decodes one object from YAML or JSON through unstructured's JSON decoding, the one
// client-go's watch of the live object uses.
func readObject(path string) (*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	doc, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(doc); err != nil {
		return nil, err
	}
	if obj.GetKind() == "" {
		return nil, errors.New("not a Kubernetes object: no kind")
	}
	return obj, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "argocd-health:", err)
	os.Exit(1)
}
