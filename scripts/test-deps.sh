#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine with only Go.
# Idempotent: it checks before it installs.
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium)
# chromium: the browser tracker test (internal/collector) drives it headless.
if ((${#need[@]})); then
	if [ "$(id -u)" -ne 0 ]; then
		echo "test-deps: missing ${need[*]}; run as root or install them" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
