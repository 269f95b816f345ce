#!/usr/bin/env bash
# Time series, side by side: Ops's tsdb module against Debian's Prometheus.
# The same 1,000 series x 1 day at 15 s (5.76M samples) go into each by
# remote write 1.0, then both answer the same range queries; bench/tsdb
# checks that the answers agree and prints the latencies, the ingest rates
# and their ratios, all measured in this run.
#
#	bench/tsdb.sh                    # builds ops into a temp dir
#	bench/tsdb.sh bin/ops            # uses a built binary
#	bench/tsdb.sh bin/ops -runs 20   # later arguments go to bench/tsdb (go run ./bench/tsdb -h)
#	PROFILE=/tmp/prof bench/tsdb.sh bin/ops   # also CPU profiles of both while they answer the queries
#	SELF_SCRAPE=15s bench/tsdb.sh bin/ops     # Ops also stores its own metrics, as by default
#
# Installs prometheus with apt-get when missing, never starts its system
# service, and runs both servers itself on loopback with data in a temp dir
# that is removed, with the processes, on exit.
set -euo pipefail
ops_arg=${1:+$(realpath "$1")} # before the cd, so a relative path works
[[ $# -eq 0 ]] || shift
cd "$(dirname "$0")/.."

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_init tsdb


main() {
	apt_install prometheus
	mkdir -p "$tmp/bin"
	local ops
	ops=$(ops_binary)
	go build -o "$tmp/bin/tsdb" ./bench/tsdb

	# Ops as shipped (every default module), except that it does not store
	# its own metrics, as Prometheus scrapes nothing: those samples are
	# stamped now, and once the head's newest sample is now, every sample of
	# the day-old load is out of order and takes the TSDB's out-of-order
	# path. SELF_SCRAPE=15s (Ops's default) measures that case.
	local ops_port prom_port
	ops_port=$(free_port)
	mkdir -p "$tmp/ops"
	OPS_DATA_DIR=$tmp/ops OPS_HTTP_LISTEN=127.0.0.1:$ops_port OPS_LOG_LEVEL=warn OPS_TSDB_SCRAPE_INTERVAL=${SELF_SCRAPE:-0} \
		"$ops" serve >"$tmp/ops.log" 2>&1 &
	pids+=($!)
	local ops_pid=$!

	# Prometheus with the settings Ops uses by default: a 30 d out-of-order
	# window and 30 d retention (which sets the largest block size); no
	# scrape targets.
	prom_port=$(free_port)
	[[ $prom_port != "$ops_port" ]] || prom_port=$(free_port)
	mkdir -p "$tmp/prom/data"
	cat >"$tmp/prom/prometheus.yml" <<-EOF
		global: {}
		scrape_configs: []
		storage:
		  tsdb:
		    out_of_order_time_window: 30d
	EOF
	prometheus --config.file="$tmp/prom/prometheus.yml" --storage.tsdb.path="$tmp/prom/data" \
		--storage.tsdb.retention.time=30d --web.listen-address="127.0.0.1:$prom_port" \
		--web.enable-remote-write-receiver --log.level=warn >"$tmp/prometheus.log" 2>&1 &
	pids+=($!)
	local prom_pid=$!

	wait_ok "http://127.0.0.1:$ops_port/readyz"
	wait_ok "http://127.0.0.1:$prom_port/-/ready"
	for _ in $(seq 100); do
		[[ -s $tmp/ops/admin.token ]] && break
		sleep 0.1
	done
	[[ -s $tmp/ops/admin.token ]] || die "ops wrote no admin token"

	echo "# ops tsdb bench $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "# $("$ops" version 2>/dev/null | head -1 || true); $(prometheus --version 2>&1 | head -1)"
	local prof=()
	if [[ -n ${PROFILE:-} ]]; then
		mkdir -p "$PROFILE"
		prof=(-profile "$PROFILE")
	fi
	"$tmp/bin/tsdb" -ops "http://127.0.0.1:$ops_port" -ops-token "$tmp/ops/admin.token" -ops-pid "$ops_pid" \
		-ops-tsdb "$tmp/ops/tsdb/data" -prom "http://127.0.0.1:$prom_port" -prom-pid "$prom_pid" \
		-prom-tsdb "$tmp/prom/data" "${prof[@]}" "$@"
	echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
}

main "$@"
