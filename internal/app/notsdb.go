//go:build notsdb

package app

import (
	"context"
	"errors"
	"io"

	"github.com/opsgraph/ops/internal/config"
)

// tsdbDef in a build without the time series (go build -tags notsdb):
// Prometheus's TSDB is not linked in, which keeps the binary and its idle
// memory smaller (docs/benchmarks.md); "all" leaves the module out and
// --target=tsdb says why it cannot start.
func (a *App) tsdbDef() Def {
	return Def{Name: "tsdb", Enabled: func() bool { return false }, New: func() (Module, error) {
		return nil, errors.New("this ops was built without the time series (-tags notsdb)")
	}}
}

// alertDef: rules need the time series, so a notsdb build has none.
func (a *App) alertDef() Def {
	return Def{Name: "alert", Enabled: func() bool { return false }, New: func() (Module, error) {
		return nil, errors.New("this ops was built without the time series (-tags notsdb): alert rules need them")
	}}
}

// tsdbHolder is empty without the time series.
type tsdbHolder struct{}

func (*tsdbHolder) reloadAlerts(config.Alert) error { return nil }

// RunRuleTests: rule tests need the time series.
func RunRuleTests(context.Context, io.Writer, ...string) (bool, error) {
	return false, errors.New("this ops was built without the time series (-tags notsdb): rule tests need them")
}

// CheckRuleFiles: a build without the time series cannot use rule files.
func CheckRuleFiles(cfg *config.Config) error {
	if len(cfg.Alert.RuleFiles) > 0 {
		return errors.New("alert.rule_files: this ops was built without the time series (-tags notsdb)")
	}
	return nil
}
