//go:build !notsdb

package app

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/opsgraph/ops/internal/alert"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/deploy"
	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/tsdb"
)

// tsdbDef: the time-series module stores windowed views, OTLP metrics,
// Ops's own metrics and remote write, and serves the Prometheus API.
func (a *App) tsdbDef() Def {
	return Def{Name: "tsdb", Deps: []string{"bus", "api"}, New: func() (Module, error) {
		host, _ := os.Hostname()
		m, err := tsdb.New(a.cfg.TSDB, tsdb.Deps{Bus: a.bus.Bus(), Logger: a.logs.Logger("tsdb"), Registry: a.reg,
			DataDir: a.cfg.DataDir, Handle: a.api.Handle, Instance: host})
		a.tsdb = m
		return m, err
	}}
}

// tsdbHolder keeps the tsdb module for the alert module (embedded in App).
type tsdbHolder struct {
	tsdb  *tsdb.Module
	alert *alert.Module
}

// reloadAlerts re-reads the rule files when the alert module runs.
func (h *tsdbHolder) reloadAlerts(cfg config.Alert) error {
	if h.alert == nil {
		return nil
	}
	return h.alert.Reload(cfg)
}

// CheckRuleFiles checks alert.rule_files as a start would.
func CheckRuleFiles(cfg *config.Config) error { return alert.CheckRuleFiles(cfg.Alert) }

// RunRuleTests runs rule unit tests in promtool's format (ops alerts
// test); false when one failed.
func RunRuleTests(ctx context.Context, w io.Writer, files ...string) (bool, error) {
	return alert.RunUnitTests(ctx, w, files...), nil
}

// alertDef: rules over the time series, evaluated in the same process as
// the TSDB (they read and write it directly).
func (a *App) alertDef() Def {
	return Def{Name: "alert", Deps: []string{"bus", "api", "tsdb"}, Enabled: func() bool { return a.cfg.Alert.Enabled },
		New: func() (Module, error) {
			if a.tsdb == nil {
				return nil, errors.New("alert needs the tsdb module in the same process")
			}
			roles := chatRoles{identity.NewRoles(a.cfg.Identity)}
			m, err := alert.New(a.cfg.Alert, alert.Deps{Bus: a.bus.Bus(), Logger: a.logs.Logger("alert"), Registry: a.reg, Handle: a.api.Handle,
				Storage: a.tsdb.DB(), Engine: a.tsdb.Engine(), ExternalURL: "http://" + a.cfg.HTTP.Listen, DataDir: a.cfg.DataDir,
				Allows: roles.allows, Status: a.statusText, Services: a.deployServices, PolicyCleared: a.clearThrottle, Logs: a.logs})
			if err != nil {
				return nil, err
			}
			a.alert = m
			return m, nil
		}}
}

// chatRoles answers whether a chat's role has a permission.
type chatRoles struct{ r *identity.Roles }

func (c chatRoles) allows(role, perm string) bool { return c.r.Allows([]string{role}, perm) }

// deployServices is the deploy module's view for the chat, when it runs.
func (a *App) deployServices(service string) ([]deploy.Service, bool) {
	m := a.deploy.Load()
	if m == nil {
		return nil, false
	}
	return m.Services(service), true
}

// clearThrottle lifts identity's login throttle for a cleared entry.
func (a *App) clearThrottle(kind, subject string) {
	if a.identity != nil {
		a.identity.ClearThrottle(kind, subject)
	}
}
