#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine with only Go.
# Idempotent: it checks before it installs.
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v coap-client-notls >/dev/null || need+=(libcoap3-bin)
[ -x /usr/sbin/slapd ] || need+=(slapd)
command -v ldapadd >/dev/null || need+=(ldap-utils)
[ -x /usr/sbin/krb5kdc ] || need+=(krb5-kdc)
[ -x /usr/sbin/kadmin.local ] || need+=(krb5-admin-server)
command -v kinit >/dev/null || need+=(krb5-user)
command -v curl >/dev/null || need+=(curl)
command -v prometheus >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v kdig >/dev/null || need+=(knot-dnsutils)
[ -x /usr/sbin/unbound ] || need+=(unbound)
command -v dnsdist >/dev/null || need+=(dnsdist)
[ -x /usr/sbin/squid ] || need+=(squid)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || need+=(python3-aiosmtpd)
# chromium: the browser tracker test drives it headless; libcoap3-bin: the CoAP
# test runs its coap-client-notls (both in internal/collector); slapd and
# ldap-utils: a real OpenLDAP for internal/identity; krb5-kdc, krb5-admin-server
# and krb5-user: a throwaway Kerberos realm for the SPNEGO tests (kinit + curl
# --negotiate); prometheus (with promtool): the time-series tests run
# promtool against Ops and remote-write to and from a real Prometheus;
# knot-dnsutils and unbound: the DNS tests ask Ops with kdig over every
# transport, with unbound as Ops's DoT upstream (internal/dnsd); dnsdist: the
# DNS bench's peer (bench/dns, run in smoke mode by make test); squid: the
# forward proxy bench's peer (bench/forward, also run in smoke mode);
# python3-aiosmtpd: a real SMTP server the e-mail report tests send to;
# nodejs and npm: the unmodified RudderStack and Segment Node SDKs
# (internal/collector/testdata/node, installed from its lock file below).
if ((${#need[@]})); then
	if [ "$(id -u)" -ne 0 ]; then
		echo "test-deps: missing ${need[*]}; run as root or install them" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# The Node SDKs the collector tests drive, exactly as the lock file has them.
sdk="$(dirname "$0")/../internal/collector/testdata/node"
if [ ! -d "$sdk/node_modules/@rudderstack/rudder-sdk-node" ] || [ "$sdk/package-lock.json" -nt "$sdk/node_modules" ]; then
	npm ci --ignore-scripts --no-audit --no-fund --prefix "$sdk" >/dev/null
fi
