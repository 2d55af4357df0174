// Command yaml2json prints the documents of a YAML file as one JSON array,
// so that scripts/check-compose.py (stdlib Python, which has no YAML parser)
// can read the Prometheus and Grafana provisioning files:
//
//	yaml2json FILE
//
// Exits 1 when the file cannot be read or parsed.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v4"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: yaml2json FILE")
		os.Exit(2)
	}
	docs, err := convert(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "yaml2json: %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	out, err := json.Marshal(docs)
	if err != nil {
		fmt.Fprintf(os.Stderr, "yaml2json: %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}

func convert(path string) ([]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	docs := []any{}
	for {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		docs = append(docs, doc)
	}
}
