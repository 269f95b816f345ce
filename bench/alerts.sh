#!/usr/bin/env bash
# Rule evaluation, side by side: Ops's alert module against Debian's
# Prometheus. The same 1,000 alerting rules (each over 100 series: sum by
# instance of a 5-minute rate) run every 15 s in both, over
# the same 100,000 series written to both by remote write; bench/alerts
# prints each round's evaluation time in both and the ratio, measured in
# this run.
#
#	bench/alerts.sh                      # builds ops into a temp dir
#	bench/alerts.sh bin/ops              # uses a built binary
#	bench/alerts.sh bin/ops -series 20000 -rules 200 -interval 5s   # later arguments go to bench/alerts
#
# Installs prometheus with apt-get when missing, never starts its system
# service, runs both servers itself on loopback with data in a temp dir
# that is removed, with the processes, on exit.
set -euo pipefail
ops_arg=${1:+$(realpath "$1")}
[[ $# -eq 0 ]] || shift
cd "$(dirname "$0")/.."

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_init alerts

main() {
	apt_install prometheus
	mkdir -p "$tmp/bin"
	local ops
	ops=$(ops_binary)
	go build -o "$tmp/bin/alerts" ./bench/alerts
	"$tmp/bin/alerts" -rules-out "$tmp/rules.yml" "$@"

	local ops_port prom_port
	ops_port=$(free_port)
	mkdir -p "$tmp/ops"
	OPS_DATA_DIR=$tmp/ops OPS_HTTP_LISTEN=127.0.0.1:$ops_port OPS_LOG_LEVEL=warn OPS_TSDB_SCRAPE_INTERVAL=0 \
		OPS_ALERT_RULE_FILES=$tmp/rules.yml "$ops" serve >"$tmp/ops.log" 2>&1 &
	pids+=($!)
	local ops_pid=$!

	prom_port=$(free_port)
	[[ $prom_port != "$ops_port" ]] || prom_port=$(free_port)
	mkdir -p "$tmp/prom/data"
	cat >"$tmp/prom/prometheus.yml" <<-EOF2
		global: {}
		scrape_configs: []
		rule_files: [$tmp/rules.yml]
	EOF2
	prometheus --config.file="$tmp/prom/prometheus.yml" --storage.tsdb.path="$tmp/prom/data" \
		--web.listen-address="127.0.0.1:$prom_port" --web.enable-remote-write-receiver --log.level=warn \
		>"$tmp/prometheus.log" 2>&1 &
	pids+=($!)
	local prom_pid=$!

	wait_ok "http://127.0.0.1:$ops_port/readyz"
	wait_ok "http://127.0.0.1:$prom_port/-/ready"
	for _ in $(seq 100); do
		[[ -s $tmp/ops/admin.token ]] && break
		sleep 0.1
	done
	[[ -s $tmp/ops/admin.token ]] || die "ops wrote no admin token"
	echo "# ops alerts bench $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "# $("$ops" version 2>/dev/null | head -1 || true); $(prometheus --version 2>&1 | head -1)"
	"$tmp/bin/alerts" -ops "http://127.0.0.1:$ops_port" -ops-token "$tmp/ops/admin.token" -prom "http://127.0.0.1:$prom_port" \
		-ops-pid "$ops_pid" -prom-pid "$prom_pid" "$@"
	echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
}

main "$@"
