//go:build notsdb

package app

import "errors"

// tsdbDef in a build without the time series (go build -tags notsdb):
// Prometheus's TSDB is not linked in, which keeps the binary and its idle
// memory smaller (docs/benchmarks.md); "all" leaves the module out and
// --target=tsdb says why it cannot start.
func (a *App) tsdbDef() Def {
	return Def{Name: "tsdb", Enabled: func() bool { return false }, New: func() (Module, error) {
		return nil, errors.New("this ops was built without the time series (-tags notsdb)")
	}}
}
