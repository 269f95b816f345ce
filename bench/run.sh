#!/usr/bin/env bash
# Side-by-side benchmarks: builds ops and the peer nats-server (from the same
# module versions go.mod pins), then prints each figure with its ratio to the
# peer measured in this run. Output is also kept in bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out bin
make build >/dev/null
go build -o bin/nats-server github.com/nats-io/nats-server/v2
stamp=$(date -u +%Y%m%dT%H%M%SZ)
{
	echo "# ops bench $stamp, $(nproc) cores, $(go version)"
	go run ./bench/ingest -ops bin/ops "$@"
	go run ./bench/footprint -ops bin/ops -nats bin/nats-server
	bench/proxy.sh bin/ops
	bash bench/tsdb.sh bin/ops
	echo
	echo "ops.js: $(wc -c < internal/collector/web/ops.js) bytes, $(gzip -9c internal/collector/web/ops.js | wc -c) gzipped (target < 2048)"
} 2>&1 | tee "bench/out/$stamp.txt"
