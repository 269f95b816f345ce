package grafana

import (
	"bytes"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DatasourceRef is how a panel names its data source.
type DatasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type datasourceFile struct {
	APIVersion  int          `yaml:"apiVersion"`
	Datasources []datasource `yaml:"datasources"`
}

type datasource struct {
	Name           string            `yaml:"name"`
	UID            string            `yaml:"uid"`
	Type           string            `yaml:"type"`
	Access         string            `yaml:"access"`
	URL            string            `yaml:"url"`
	BasicAuth      bool              `yaml:"basicAuth,omitempty"`
	BasicAuthUser  string            `yaml:"basicAuthUser,omitempty"`
	Editable       bool              `yaml:"editable"`
	JSONData       map[string]any    `yaml:"jsonData"`
	SecureJSONData map[string]string `yaml:"secureJsonData"`
}

// Datasource is datasources/ops.yaml: a Prometheus data source on Ops's
// /prometheus API that authenticates with an Ops token.
func Datasource(o Options) ([]byte, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	secret := "${" + o.TokenEnv + "}"
	if o.Token != "" {
		// Grafana expands $NAME and ${NAME} in provisioning files; $$ is a
		// literal $.
		secret = strings.ReplaceAll(o.Token, "$", "$$")
	}
	ds := datasource{
		Name: o.Name, UID: o.UID, Type: "prometheus", Access: "proxy", URL: o.URL + "/prometheus",
		JSONData: map[string]any{
			// POST keeps long queries out of URLs; Ops's API takes both.
			"httpMethod":     "POST",
			"prometheusType": "Prometheus",
			"timeInterval":   promDuration(o.ScrapeInterval),
			// Ops has no rules or Alertmanager API: without this Grafana's
			// alerting pages query routes that answer 404.
			"manageAlerts": false,
		},
	}
	if o.PrometheusVersion != "" {
		ds.JSONData["prometheusVersion"] = o.PrometheusVersion
	}
	if o.BasicAuthUser != "" {
		// Ops takes an API token as the password of Basic auth; the user
		// name is only for Grafana's display.
		ds.BasicAuth, ds.BasicAuthUser = true, o.BasicAuthUser
		ds.SecureJSONData = map[string]string{"basicAuthPassword": secret}
	} else {
		ds.JSONData["httpHeaderName1"] = "Authorization"
		ds.SecureJSONData = map[string]string{"httpHeaderValue1": "Bearer " + secret}
	}
	var b bytes.Buffer
	b.WriteString("# Written by `ops grafana provision`: the Ops time-series API as a Prometheus data source.\n")
	if o.Token == "" {
		b.WriteString("# Grafana reads the token from its environment: set " + o.TokenEnv + " to an Ops token\n" +
			"# with series:read (ops token create --name grafana --role viewer).\n")
	}
	if err := encodeYAML(&b, datasourceFile{APIVersion: 1, Datasources: []datasource{ds}}); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

type providerFile struct {
	APIVersion int        `yaml:"apiVersion"`
	Providers  []provider `yaml:"providers"`
}

type provider struct {
	Name                  string         `yaml:"name"`
	OrgID                 int            `yaml:"orgId"`
	Folder                string         `yaml:"folder"`
	Type                  string         `yaml:"type"`
	DisableDeletion       bool           `yaml:"disableDeletion"`
	AllowUIUpdates        bool           `yaml:"allowUiUpdates"`
	UpdateIntervalSeconds int            `yaml:"updateIntervalSeconds"`
	Options               map[string]any `yaml:"options"`
}

// Provider is dashboards/ops.yaml: a file provider that loads the
// dashboards' JSON into the folder "Ops".
func Provider(o Options) ([]byte, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString("# Written by `ops grafana provision`: the Ops dashboards. Re-run it after adding or\n" +
		"# changing views; Grafana picks up changed files within updateIntervalSeconds.\n")
	err := encodeYAML(&b, providerFile{APIVersion: 1, Providers: []provider{{
		Name: o.Name, OrgID: 1, Folder: o.Name, Type: "file",
		// Dashboards edited in Grafana would be overwritten by the next
		// provisioning run; save a copy to change one.
		AllowUIUpdates: false, UpdateIntervalSeconds: 60,
		Options: map[string]any{"path": o.DashboardsPath, "foldersFromFilesStructure": false},
	}}})
	if err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func encodeYAML(b *bytes.Buffer, v any) error {
	enc := yaml.NewEncoder(b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return err
	}
	return enc.Close()
}
