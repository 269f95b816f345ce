package enrich_test

import (
	"encoding/json"
	"fmt"

	"github.com/opsgraph/ops/internal/enrich"
)

// A processor with `use: referrer` and `with: {into: data.source}` does this
// to each event.
func ExampleNew() {
	e, err := enrich.New("referrer", enrich.Options{"into": "data.source"})
	if err != nil {
		panic(err)
	}
	var obj map[string]any
	_ = json.Unmarshal([]byte(`{"type":"track.page","data":{"context":{"page":{
		"url":"https://shop.example.com/pricing","referrer":"https://www.google.co.uk/"}}}}`), &obj)
	if err := e.Enrich(obj); err != nil {
		panic(err)
	}
	out, _ := json.Marshal(obj["data"].(map[string]any)["source"])
	fmt.Println(string(out))
	// Output: {"class":"search","domain":"google.co.uk","name":"Google"}
}

func ExampleNew_badOption() {
	_, err := enrich.New("session", enrich.Options{"timeout": "soon"})
	fmt.Println(err)
	// Output: with.timeout: want a duration, got "soon"
}
