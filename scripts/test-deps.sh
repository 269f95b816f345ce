#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine with only Go.
# Idempotent: it checks before it installs.
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v coap-client-notls >/dev/null || need+=(libcoap3-bin)
# chromium: the browser tracker test drives it headless; libcoap3-bin: the CoAP
# test runs its coap-client-notls (both in internal/collector).
if ((${#need[@]})); then
	if [ "$(id -u)" -ne 0 ]; then
		echo "test-deps: missing ${need[*]}; run as root or install them" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
