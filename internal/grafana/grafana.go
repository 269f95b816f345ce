package grafana

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/opsgraph/ops/internal/config"
)

// View is what a dashboard needs of a view.
type View struct {
	Name     string
	Key      []string // key fields, in order; each is a label of the view's series
	Measures []Measure
	Window   time.Duration // 0: not windowed, so nothing of it is in the TSDB
}

// Measure is one measure of a view: its name and its definition as written
// in ops.yaml ("count", "sum(this.data.total)", "latest").
type Measure struct {
	Name string
	Src  string
}

// kind is the measure's function: count, sum, min, max, avg, last, uniq or
// latest.
func (m Measure) kind() string {
	k, _, _ := strings.Cut(strings.TrimSpace(m.Src), "(")
	return strings.TrimSpace(k)
}

// numeric says whether the measure can have series: the TSDB stores only
// numeric values, and latest holds entity state (an object). min, max and
// last may hold strings too; their panels are then empty.
func (m Measure) numeric() bool { return m.kind() != "latest" }

// Windowed reports whether the view has series in the TSDB.
func (v View) Windowed() bool { return v.Window > 0 }

// FromConfig returns the views of ops.yaml.
func FromConfig(vs []config.View) []View {
	out := make([]View, 0, len(vs))
	for _, cv := range vs {
		v := View{Name: cv.Name, Window: cv.Window.D()}
		for _, k := range cv.Key {
			v.Key = append(v.Key, k.Name)
		}
		for _, m := range cv.Measures {
			v.Measures = append(v.Measures, Measure{Name: m.Name, Src: m.Value})
		}
		out = append(out, v)
	}
	return out
}

// FromInfo builds a view from what GET /api/v1/views lists: measures as
// "name=definition" and the window as a duration ("1m0s", "1d"), empty
// when the view has none.
func FromInfo(name string, key, measures []string, window string) (View, error) {
	v := View{Name: name, Key: key}
	if name == "" {
		return View{}, errors.New("view without a name")
	}
	for _, s := range measures {
		n, src, ok := strings.Cut(s, "=")
		if !ok || n == "" {
			return View{}, fmt.Errorf("view %s: measure %q: want name=definition", name, s)
		}
		v.Measures = append(v.Measures, Measure{Name: n, Src: src})
	}
	if window != "" {
		d, err := config.ParseDuration(window)
		if err != nil {
			return View{}, fmt.Errorf("view %s: window: %w", name, err)
		}
		v.Window = d
	}
	return v, nil
}

// Options say how Grafana reaches Ops and where the files will live.
type Options struct {
	// URL is Ops as Grafana reaches it (http://ops:7070); the data source
	// points at URL/prometheus.
	URL string
	// Token is written into the data source as is (with $ escaped from
	// Grafana's expansion). Empty: a reference to the environment variable
	// TokenEnv, which Grafana expands when it reads the file.
	Token    string
	TokenEnv string
	// BasicAuthUser, when set, sends the token as the password of Basic
	// auth instead of an Authorization: Bearer header.
	BasicAuthUser string
	// Name and UID of the data source; dashboards refer to it by UID.
	Name, UID string
	// DashboardsPath is where Grafana will read the dashboards' JSON from
	// (the provider's options.path).
	DashboardsPath string
	// ScrapeInterval is how often Ops stores its own metrics; Grafana's
	// $__rate_interval is at least four of them.
	ScrapeInterval time.Duration
	// PrometheusVersion is the embedded Prometheus's release, so that
	// Grafana enables what that release supports.
	PrometheusVersion string
}

// Defaults for Options fields left empty.
const (
	DefaultName     = "Ops"
	DefaultUID      = "ops"
	DefaultTokenEnv = "OPS_GRAFANA_TOKEN"
)

// File names, relative to the provisioning directory.
const (
	DatasourceFile = "datasources/ops.yaml"
	ProviderFile   = "dashboards/ops.yaml"
	// DashboardsDir holds the dashboards' JSON. It is a folder of its own:
	// Grafana reads every YAML file in dashboards/ as a provider.
	DashboardsDir = "dashboards/ops"
	// HealthFile is the "Ops health" dashboard; view dashboards are
	// ViewFilePrefix + view name + ".json".
	HealthFile     = DashboardsDir + "/ops-health.json"
	ViewFilePrefix = DashboardsDir + "/ops-view-"
)

func (o *Options) defaults() error {
	if o.URL == "" {
		return errors.New("grafana: the Ops URL is required")
	}
	o.URL = strings.TrimRight(o.URL, "/")
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.UID == "" {
		o.UID = DefaultUID
	}
	if o.Token == "" && o.TokenEnv == "" {
		o.TokenEnv = DefaultTokenEnv
	}
	if o.ScrapeInterval <= 0 {
		o.ScrapeInterval = 15 * time.Second
	}
	if o.DashboardsPath == "" {
		return errors.New("grafana: the dashboards path is required")
	}
	return nil
}

// Provision returns every file to write, by path relative to Grafana's
// provisioning directory: the data source, the dashboard provider, the
// health dashboard and one dashboard per windowed view with a numeric
// measure. Views without a window have no series and are left out.
func Provision(views []View, o Options) (map[string][]byte, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	ds, err := Datasource(o)
	if err != nil {
		return nil, err
	}
	files[DatasourceFile] = ds
	pv, err := Provider(o)
	if err != nil {
		return nil, err
	}
	files[ProviderFile] = pv
	ref := DatasourceRef{Type: "prometheus", UID: o.UID}
	if files[HealthFile], err = marshal(HealthDashboard(ref)); err != nil {
		return nil, err
	}
	for _, v := range views {
		d := ViewDashboard(v, ref)
		if d == nil {
			continue
		}
		name := ViewFile(v.Name)
		if _, dup := files[name]; dup {
			return nil, fmt.Errorf("grafana: view %q is listed twice", v.Name)
		}
		if files[name], err = marshal(d); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// ViewFile is the path of a view's dashboard.
func ViewFile(view string) string {
	return ViewFilePrefix + path.Base(view) + ".json"
}

// marshal writes JSON as Grafana exports it: indented, with <, > and &
// kept as they are so queries stay readable.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
