# bench/lib.sh: what the side-by-side scripts share. Source it from the
# repository root.

# bench_init NAME makes the temp dir $tmp and the list $pids of background
# processes; on exit they are stopped, their logs shown if the script
# failed, and $tmp removed.
bench_init() {
	bench_name=$1
	tmp=$(mktemp -d -t "ops$1.XXXXXX")
	pids=()
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

bench_cleanup() {
	local rc=$?
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	if [[ $rc -ne 0 ]] && compgen -G "$tmp/*.log" >/dev/null; then
		echo "$bench_name bench failed (exit $rc); server logs:" >&2
		tail -n 20 "$tmp"/*.log >&2 || true
	fi
	rm -rf "$tmp"
}

die() { echo "$bench_name bench: $*" >&2; exit 1; }

# apt_install CMD... puts in the Debian packages named like the commands
# that are missing (wrk, caddy, nginx, prometheus). A policy-rc.d that
# refuses every service keeps the packages' own units from starting
# (Docker images already have one; it is left as it is).
apt_install() {
	local missing=() bin
	for bin in "$@"; do
		command -v "$bin" >/dev/null || missing+=("$bin")
	done
	[[ ${#missing[@]} -eq 0 ]] && return
	local sudo=()
	[[ $(id -u) -eq 0 ]] || sudo=(sudo)
	echo "installing ${missing[*]} (apt-get)" >&2
	local policy=/usr/sbin/policy-rc.d made=""
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod 755 "$policy"
		made=1
	fi
	{ "${sudo[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
		>"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
	[[ -z $made ]] || "${sudo[@]}" rm -f "$policy"
}

# wait_ok polls url until it answers 200, for up to 30 s.
wait_ok() {
	local url=$1
	for _ in $(seq 300); do
		[[ $(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null) == 200 ]] && return
		sleep 0.1
	done
	die "$url did not answer 200 within 30s"
}

# ops_binary prints the ops binary to measure: the script's argument
# ($ops_arg), or one built into $tmp/bin.
ops_binary() {
	local ops=$ops_arg
	if [[ -z $ops ]]; then
		ops=$tmp/bin/ops
		mkdir -p "$tmp/bin"
		go build -o "$ops" ./cmd/ops
	fi
	[[ -x $ops ]] || die "no ops binary at $ops"
	echo "$ops"
}

# free_port prints a loopback port nothing listens on, below the kernel's
# ephemeral range (32768 and up here): a port in it can be taken by an
# outgoing connection between this check and the bind (the smoke run once
# failed with "address already in use" that way).
free_port() {
	local p lo
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % (lo - 20000)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	die "no free port found"
}
