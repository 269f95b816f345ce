//go:build !notsdb

package app

import (
	"os"

	"github.com/opsgraph/ops/internal/tsdb"
)

// tsdbDef: the time-series module stores windowed views, OTLP metrics,
// Ops's own metrics and remote write, and serves the Prometheus API.
func (a *App) tsdbDef() Def {
	return Def{Name: "tsdb", Deps: []string{"bus", "api"}, New: func() (Module, error) {
		host, _ := os.Hostname()
		return tsdb.New(a.cfg.TSDB, tsdb.Deps{Bus: a.bus.Bus(), Logger: a.logs.Logger("tsdb"), Registry: a.reg,
			DataDir: a.cfg.DataDir, Handle: a.api.Handle, Instance: host})
	}}
}
