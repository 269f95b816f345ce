#!/usr/bin/env bash
# Side-by-side benchmarks: builds ops and the peer nats-server (from the same
# module versions go.mod pins), then prints each figure with its ratio to the
# peer measured in this run. Output is also kept in bench/out/.
#
#	bash bench/run.sh            # the full run (about 25 minutes on 2 cores)
#	SMOKE=1 bash bench/run.sh    # every script in a tiny mode, seconds each:
#	                             # proves each still runs (make bench-smoke; make test)
#
# Each script runs even when one before it failed; the run fails at the end,
# naming the ones that did.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out bin
make build >/dev/null || exit 1
go build -o bin/nats-server github.com/nats-io/nats-server/v2 || exit 1
stamp=$(date -u +%Y%m%dT%H%M%SZ)
smoke=${SMOKE:-}
failed=()

# step NAME CMD...: runs one bench, records a failure.
step() {
	local name=$1
	shift
	if ! "$@"; then
		echo "bench $name FAILED" >&2
		failed+=("$name")
	fi
}

if [[ -n $smoke ]]; then
	ingest=(-events 2000 -raw 2000)
	graph=(-events 5000 -keys 10)
	footprint=(-idle 1s -starts 1)
	tsdb=(-series 20 -span 30m -runs 1 -settle 10s)
	export DURATION=1s WARMUP=1s ROUNDS=1
	soak=(-duration 5s -rate 500 -settle 3s)
	analytics=(-events 20000 -visitors 2000 -pages 500 -runs 2 -latency 2)
	alerts=(-series 2000 -rules 20 -interval 2s -history 2m -rounds 1)
	dnsb=(-duration 1s -names 50 -mem-names 2000 -conc 8)
	fwd=(-duration 1s -conc 4 -scan-mb 2)
else
	ingest=() graph=() footprint=() tsdb=() soak=() analytics=() alerts=() dnsb=() fwd=()
fi

{
	echo "# ops bench $stamp, $(nproc) cores, $(go version)${smoke:+ (smoke: tiny sizes, figures mean nothing)}"
	step ingest go run ./bench/ingest -ops bin/ops "${ingest[@]}" "$@"
	step graph go run ./bench/graph -ops bin/ops "${graph[@]}"
	step footprint go run ./bench/footprint -ops bin/ops -nats bin/nats-server "${footprint[@]}"
	step proxy bench/proxy.sh bin/ops
	step tsdb bash bench/tsdb.sh bin/ops "${tsdb[@]}"
	step soak go run ./bench/soak -ops bin/ops "${soak[@]}"
	step analytics go run ./bench/analytics -ops bin/ops "${analytics[@]}"
	step alerts bash bench/alerts.sh bin/ops "${alerts[@]}"
	step dns go run ./bench/dns -ops bin/ops "${dnsb[@]}"
	step forward go run ./bench/forward -ops bin/ops "${fwd[@]}"
	echo
	echo "ops.js: $(wc -c < internal/collector/web/ops.js) bytes, $(gzip -9c internal/collector/web/ops.js | wc -c) gzipped (target < 2048)"
} 2>&1 | tee "bench/out/$stamp.txt"

# The block above ran in a subshell (the pipe): its failures are read back
# from the output.
if grep -q '^bench .* FAILED$' "bench/out/$stamp.txt"; then
	# The lines before each failure say why; CI shows only the tail.
	grep -B4 '^bench .* FAILED$' "bench/out/$stamp.txt" >&2
	echo "failed: $(grep '^bench .* FAILED$' "bench/out/$stamp.txt" | awk '{print $2}' | tr '\n' ' ')" >&2
	exit 1
fi
