package graph

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/opsgraph/ops/internal/config"
)

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// Every YAML example in docs/ is a config that loads and compiles, so what a
// person pastes works. Blocks that start with "# fragment" are parts of one.
func TestDocExamplesCompile(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range yamlBlock.FindAllStringSubmatch(string(b), -1) {
			if strings.HasPrefix(m[1], "# fragment") {
				continue
			}
			n++
			c, err := config.Parse([]byte(m[1]))
			if err == nil {
				_, err = Compile(c)
			}
			if err != nil {
				t.Errorf("%s, YAML example %d:\n%s\n%v", filepath.Base(f), i+1, m[1], err)
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d examples found", n)
	}
}
