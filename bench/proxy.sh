#!/usr/bin/env bash
# Reverse-proxy throughput and latency, side by side: Ops's edge proxy (with
# and without request tracking) against nginx and Caddy, all in front of the
# same in-memory upstream (bench/proxy/upstream), loaded by wrk. Prints the
# ratios measured in this run.
#
#	bench/proxy.sh           # builds ops into a temp dir
#	bench/proxy.sh bin/ops   # uses a built binary (bench/run.sh does)
#	ROUNDS=3 bench/proxy.sh  # best of 3 interleaved rounds, on a busy machine
#
# Installs wrk, caddy and nginx with apt-get when missing, never starts their
# system services, and runs every server itself on loopback with its own
# config in a temp dir that is removed, with the processes, on exit.
set -euo pipefail
ops_arg=${1:+$(realpath "$1")} # before the cd, so a relative path works
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-1} # each target's best round is shown

UP_ADDR=127.0.0.1:18000
NGINX_PORT=18081
CADDY_PORT=18082
OPS_PORT=18083        # ops with tracking
OPS_API=127.0.0.1:18093
OPSNT_PORT=18084      # ops without tracking
OPSNT_API=127.0.0.1:18094
OPSX_PORT=18085       # ops with tracking, cache and HTML injection on
OPSX_API=127.0.0.1:18095
LIGHT_CONNS=${LIGHT_CONNS:-4} # the latency pass: light load, so p99 shows the proxy, not queueing

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_init proxy
declare -A srvpid # server name -> pid

# start runs a server in the background with its output in $tmp/<name>.log.
start() {
	local name=$1
	shift
	"$@" >"$tmp/$name.log" 2>&1 &
	pids+=($!)
	srvpid[$name]=$!
}

# cpu_ticks prints the user+system CPU ticks a server (and its child
# processes: nginx's workers) has used so far.
cpu_ticks() {
	local t=0 p
	for p in "$1" $(pgrep -P "$1" || true); do
		t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
	done
	echo "$t"
}

# our_ticks prints the CPU ticks used so far by every server started here and
# by this shell's finished children (wrk).
our_ticks() {
	local t p
	t=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$$/stat")
	for p in "${pids[@]}"; do
		t=$((t + $(cpu_ticks "$p")))
	done
	echo "$t"
}

# cpu_stat prints the machine's busy and total CPU ticks (idle and iowait are
# not busy).
cpu_stat() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }


ops_config() { # dir proxy-port api-addr tracking [extra route lines] [routes before]
	mkdir -p "$1/data"
	cat >"$1/ops.yaml" <<-EOF
		data_dir: $1/data
		http: {listen: "$3"}
		log: {level: warn}
		collector: {write_keys: [wk_bench_key]}
		proxy:
		  listen: 127.0.0.1:$2
		  tracking: {enabled: $4}
		  routes:
		${6:-}
		    - name: bench
		      upstreams: [http://$UP_ADDR]
		${5:-}
	EOF
}

nginx_config() { # dir
	mkdir -p "$1"
	# As root, nginx's workers would run as nobody, who cannot enter the
	# private temp dir its cache lives in.
	local user=""
	[[ $(id -u) -ne 0 ]] || user="user root;"
	cat >"$1/nginx.conf" <<-EOF
		$user
		worker_processes 2;
		pid $1/nginx.pid;
		error_log $1/error.log warn;
		events { worker_connections 4096; }
		http {
		  access_log off;
		  client_body_temp_path $1/body;
		  proxy_temp_path $1/proxy;
		  fastcgi_temp_path $1/fastcgi;
		  uwsgi_temp_path $1/uwsgi;
		  scgi_temp_path $1/scgi;
		  upstream origin {
		    server $UP_ADDR;
		    keepalive 64;
		  }
		  proxy_cache_path $1/cache keys_zone=bench:10m;
		  server {
		    listen 127.0.0.1:$NGINX_PORT;
		    location / {
		      proxy_pass http://origin;
		      proxy_http_version 1.1;
		      proxy_set_header Connection "";
		    }
		    # The peers of Ops's cache and injection rows: nginx's own cache,
		    # and sub_filter inserting the same tag Ops injects.
		    location /cached {
		      proxy_pass http://origin;
		      proxy_http_version 1.1;
		      proxy_set_header Connection "";
		      proxy_cache bench;
		    }
		    location /html {
		      proxy_pass http://origin;
		      proxy_http_version 1.1;
		      proxy_set_header Connection "";
		      proxy_set_header Accept-Encoding "";
		      sub_filter '</head>' '<script defer src="/_ops/ops.js" data-api="/_ops" data-key="wk_bench_key"></script></head>';
		      sub_filter_once on;
		    }
		  }
		}
	EOF
}

caddy_config() { # dir
	mkdir -p "$1"
	cat >"$1/Caddyfile" <<-EOF
		{
		  admin off
		  auto_https off
		  log default {
		    output discard
		  }
		}
		http://127.0.0.1:$CADDY_PORT {
		  bind 127.0.0.1
		  reverse_proxy $UP_ADDR
		}
	EOF
}

# stored prints the ev.proxy.request events an Ops instance has stored and
# their distinct ids, once the figure stops moving (tracking publishes in
# batches every 200 ms), polling for up to 30 s.
stored() { # data-dir api-addr
	local prev="" cur
	for _ in $(seq 60); do
		cur=$("$tmp/bin/count" -api "http://$2" -token-file "$1/admin.token")
		[[ $cur == "$prev" ]] && break
		prev=$cur
		sleep 0.5
	done
	echo "$cur"
}

# to_ms converts a wrk duration (850.00us, 1.23ms, 1.01s, 1.50m) to ms.
to_ms() {
	awk -v d="$1" 'BEGIN {
		n = d + 0; u = d; sub(/^[0-9.]+/, "", u)
		f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
		if (f < 0) { print "bad wrk duration " d > "/dev/stderr"; exit 1 }
		printf "%.3f", n * f
	}'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# ratio_line prints "ratio LABEL = a/b" when both targets were measured.
ratio_line() { # label target-a target-b note
	[[ -n ${rps[$2]:-} && -n ${rps[$3]:-} ]] || return 0
	echo "ratio $1 = $(ratio "${rps[$2]}" "${rps[$3]}")$4"
}

# added is a target's p99 over the upstream's own.
added() {
	[[ $1 == direct || -z ${p99[direct]:-} ]] && { echo -; return; }
	awk -v a="${p99[$1]}" -v b="${p99[direct]}" 'BEGIN { printf "%+.2f", a - b }'
}

declare -A rps p50 p99 reqs errs cpu idle others

warm() { wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "$1" >/dev/null; }

# measure loads a target and, when it is the target's best run so far, puts
# its figures (with the CPU its server used a request) in the arrays above;
# it fails when an earlier round was better.
measure() { # name url server
	local out="$tmp/wrk.txt" t0 t1 o0 o1 b0 a0 b1 a1 r
	t0=$(cpu_ticks "${srvpid[$3]}")
	read -r b0 a0 < <(cpu_stat)
	o0=$(our_ticks)
	wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$2" >"$out"
	o1=$(our_ticks)
	read -r b1 a1 < <(cpu_stat)
	t1=$(cpu_ticks "${srvpid[$3]}")
	r=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
	[[ -n $r ]] || die "could not parse wrk output for $1: $(cat "$out")"
	if [[ -n ${rps[$1]:-} ]] && awk -v a="$r" -v b="${rps[$1]}" 'BEGIN { exit !(a <= b) }'; then
		return 1
	fi
	rps[$1]=$r
	reqs[$1]=$(awk '/ requests in / { print $1 }' "$out")
	p50[$1]=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
	p99[$1]=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
	# Errors would flatter a proxy (a fast 502 is still fast), so they are shown.
	errs[$1]=$(awk '/^  Non-2xx/ { n += $NF } /Socket errors/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$out")
	cpu[$1]=$(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="${reqs[$1]}" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
	idle[$1]=$((100 - 100 * (b1 - b0) / (a1 - a0)))
	# Other processes on the machine take CPU from the run; this shows how much.
	# Per-process and machine ticks are sampled apart, so clamp at 0.
	others[$1]=$((100 * (b1 - b0 - (o1 - o0)) / (a1 - a0)))
	[[ ${others[$1]} -ge 0 ]] || others[$1]=0
}

main() {
	apt_install wrk caddy nginx
	mkdir -p "$tmp/bin"
	# Not an OPS_ variable: Ops rejects settings it does not know.
	local ops
	ops=$(ops_binary)
	# A server left from another run would be measured in place of ours.
	for port in "${UP_ADDR#*:}" "$NGINX_PORT" "$CADDY_PORT" "$OPS_PORT" "${OPS_API#*:}" "$OPSNT_PORT" "${OPSNT_API#*:}" "$OPSX_PORT" "${OPSX_API#*:}"; do
		! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "port $port is in use"
	done
	go build -o "$tmp/bin/upstream" ./bench/proxy/upstream
	go build -o "$tmp/bin/count" ./bench/proxy/count

	start upstream "$tmp/bin/upstream" -addr "$UP_ADDR"
	nginx_config "$tmp/nginx"
	start nginx nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf" -g 'daemon off;'
	caddy_config "$tmp/caddy"
	# Caddy keeps state under XDG dirs; keep them out of $HOME.
	start caddy env XDG_DATA_HOME="$tmp/caddy" XDG_CONFIG_HOME="$tmp/caddy" \
		caddy run --config "$tmp/caddy/Caddyfile" --adapter caddyfile
	ops_config "$tmp/ops" "$OPS_PORT" "$OPS_API" true
	start ops "$ops" serve -c "$tmp/ops/ops.yaml"
	ops_config "$tmp/opsnt" "$OPSNT_PORT" "$OPSNT_API" false
	start opsnt "$ops" serve -c "$tmp/opsnt/ops.yaml"
	# /cached through a caching route; the rest (/html) through one that
	# injects the tracker, as nginx's /cached and /html locations do.
	ops_config "$tmp/opsx" "$OPSX_PORT" "$OPSX_API" true $'      inject: {tracker: true, write_key: wk_bench_key}' \
		$'    - name: cached\n      path: /cached\n      upstreams: [http://'"$UP_ADDR"$']\n      cache: true'

	start opsx "$ops" serve -c "$tmp/opsx/ops.yaml"

	local -a names=("direct" "nginx" "caddy" "ops (tracking)" "ops (no tracking)" "nginx cache hit" "ops cache hit" "direct /html" "nginx inject /html" "ops inject /html")
	local -A url=(
		["direct"]=http://$UP_ADDR/
		["nginx"]=http://127.0.0.1:$NGINX_PORT/
		["caddy"]=http://127.0.0.1:$CADDY_PORT/
		["ops (tracking)"]=http://127.0.0.1:$OPS_PORT/
		["ops (no tracking)"]=http://127.0.0.1:$OPSNT_PORT/
		["nginx cache hit"]=http://127.0.0.1:$NGINX_PORT/cached
		["nginx inject /html"]=http://127.0.0.1:$NGINX_PORT/html
		["ops cache hit"]=http://127.0.0.1:$OPSX_PORT/cached
		["direct /html"]=http://$UP_ADDR/html
		["ops inject /html"]=http://127.0.0.1:$OPSX_PORT/html
	)
	local -A srv=(["direct"]=upstream ["nginx"]=nginx ["caddy"]=caddy ["ops (tracking)"]=ops ["ops (no tracking)"]=opsnt
		["ops cache hit"]=opsx ["direct /html"]=upstream ["ops inject /html"]=opsx ["nginx cache hit"]=nginx ["nginx inject /html"]=nginx)
	for n in "${names[@]}"; do
		wait_ok "${url[$n]}"
	done
	wait_ok "http://$OPS_API/readyz"

	# Rounds go through the targets in turn, so a burst of outside load
	# hits one round of each rather than every round of one.
	local round before after distinct events kept
	# ONLY="nginx,ops (tracking)" measures just those targets (more rounds
	# in the same time, for the headline ratio on a noisy machine).
	if [[ -n ${ONLY:-} ]]; then
		local -a picked=()
		IFS=, read -r -a want <<<"$ONLY"
		for n in "${names[@]}"; do
			for w in "${want[@]}"; do
				[[ $n == "$w" ]] && picked+=("$n")
			done
		done
		names=("${picked[@]}")
	fi
	for round in $(seq "$ROUNDS"); do
		for n in "${names[@]}"; do
			warm "${url[$n]}"
			if [[ $n != "ops (tracking)" ]]; then
				measure "$n" "${url[$n]}" "${srv[$n]}" || true
				continue
			fi
			# Count the measured run only: the warm-up's events settle first,
			# and the run's before the next target starts.
			read -r before _ < <(stored "$tmp/ops/data" "$OPS_API")
			kept=yes
			measure "$n" "${url[$n]}" "${srv[$n]}" || kept=""
			read -r after distinct < <(stored "$tmp/ops/data" "$OPS_API")
			[[ -z $kept ]] || events=$((after - before))
		done
	done

	echo
	echo "Reverse proxy, GET / with a 1 KiB body from an in-memory upstream: wrk -t$THREADS -c$CONNS -d$DURATION --latency after a $WARMUP warm-up;" \
		"best of $ROUNDS round(s)"
	echo "$(nproc) cores shared by wrk, the proxy and the upstream; the same for every target, so the ratios are fair"
	echo "$(nginx -v 2>&1 | sed 's/^nginx version: //'), caddy $(caddy version | awk '{print $1}'), $(wrk -v 2>&1 | awk 'NR == 1 {print $1, $2}')"
	echo "cpu us/req: CPU time of the server under load (for direct, the upstream) a request; idle, others: the share"
	echo "of the machine's CPU left idle and taken by processes outside this benchmark during the run (others > 5% disturbs it)"
	printf '%-18s %10s %8s %8s %22s %11s %5s %7s %7s\n' target req/s "p50 ms" "p99 ms" "p99 added over direct" "cpu us/req" idle others errors
	for n in "${names[@]}"; do
		printf '%-18s %10.0f %8.2f %8.2f %22s %11s %4d%% %6d%% %7d\n' "$n" "${rps[$n]}" "${p50[$n]}" "${p99[$n]}" \
			"$(added "$n")" "${cpu[$n]}" "${idle[$n]}" "${others[$n]}" "${errs[$n]}"
	done
	# wrk does not count the responses still in flight when it stops (at most
	# one a connection), so a few more events than requests is expected.
	if [[ -n ${reqs[ops (tracking)]:-} ]]; then
		echo "ops (tracking) measured run: ${reqs[ops (tracking)]} requests served (wrk), $events ev.proxy.request events stored" \
			"(${after} in all with warm-ups and other rounds, ${distinct} distinct ids)"
	fi
	ratio_line "ops(tracking)/caddy" "ops (tracking)" caddy "   (target >= 1.0)"
	ratio_line "ops(tracking)/nginx" "ops (tracking)" nginx "   (target >= 0.6)"
	ratio_line "ops cache hit/nginx cache hit" "ops cache hit" "nginx cache hit" ""
	ratio_line "ops inject/nginx sub_filter" "ops inject /html" "nginx inject /html" "   (Caddy has neither without plugins)"
	[[ -z ${ONLY:-} ]] || return 0

	# Latency added by the proxy, under light load (-c$LIGHT_CONNS), where
	# percentiles show the work a request costs rather than queueing on
	# saturated cores.
	echo
	echo "latency under light load: wrk -t1 -c$LIGHT_CONNS -d$DURATION --latency (best of $ROUNDS)"
	printf '%-18s %10s %8s %8s %22s\n' target req/s "p50 ms" "p99 ms" "p99 added over direct"
	local -a light=("direct" "nginx" "caddy" "ops (tracking)" "ops cache hit")
	local -A lrps lp50 lp99
	for round in $(seq "$ROUNDS"); do
		for n in "${light[@]}"; do
			wrk -t1 -c"$LIGHT_CONNS" -d"$DURATION" --latency "${url[$n]}" >"$tmp/light.txt"
			local q50 q99 r
			r=$(awk '/^Requests\/sec:/ { print $2 }' "$tmp/light.txt")
			q50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$tmp/light.txt")")
			q99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$tmp/light.txt")")
			if [[ -z ${lp99[$n]:-} ]] || awk -v a="$q99" -v b="${lp99[$n]}" 'BEGIN { exit !(a < b) }'; then
				lrps[$n]=$r lp50[$n]=$q50 lp99[$n]=$q99
			fi
		done
	done
	for n in "${light[@]}"; do
		local add=-
		[[ $n == direct ]] || add=$(awk -v a="${lp99[$n]}" -v b="${lp99[direct]}" 'BEGIN { printf "%+.2f", a - b }')
		printf '%-18s %10.0f %8.2f %8.2f %22s\n' "$n" "${lrps[$n]}" "${lp50[$n]}" "${lp99[$n]}" "$add"
	done
	echo "target: ops (tracking) p99 added over direct <= 1 ms"
}

main
