#!/usr/bin/env bash
# The one-command demo (make run): builds bin/lodestar, bin/loadgen and
# bin/lodestarctl, starts the all-in-one (embedded NATS, in-process cache)
# with fresh data in data/demo, feeds it loadgen's demo scenario (300
# accounts of different fates, 45 days of history, then live: the
# simulated product's busy hours at 60x, so that scores and alerts move
# whatever the hour and day) and prints the worst accounts, the band
# counts and the open alerts every few seconds until Ctrl-C, which stops
# everything.
#
# Environment: HTTP_ADDR (127.0.0.1:8080), GRPC_ADDR (127.0.0.1:9090),
# DEMO_DIR (data/demo, emptied at every start), INTERVAL (10 seconds), GO.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=$PWD/bin
http_addr=${HTTP_ADDR:-127.0.0.1:8080}
grpc_addr=${GRPC_ADDR:-127.0.0.1:9090}
demo_dir=${DEMO_DIR:-data/demo}
interval=${INTERVAL:-10}
go=${GO:-go}

command -v curl >/dev/null || { echo "run-demo: curl is needed to wait for Lodestar" >&2; exit 1; }
if curl -fsS -o /dev/null "http://$http_addr/healthz" 2>/dev/null; then
	echo "run-demo: something already answers on $http_addr; stop it or set HTTP_ADDR and GRPC_ADDR" >&2
	exit 1
fi

echo "Building bin/lodestar, bin/loadgen and bin/lodestarctl..."
mkdir -p "$bin"
"$go" build -o "$bin/lodestar" ./cmd/lodestar
"$go" build -o "$bin/loadgen" ./tools/loadgen
"$go" build -o "$bin/lodestarctl" ./tools/lodestarctl

# A fresh start: history played into old data would count twice.
rm -rf "$demo_dir"
mkdir -p "$demo_dir"
lodestar_log=$demo_dir/lodestar.log
loadgen_log=$demo_dir/loadgen.log

# The demo tenant's keys derive from a fresh random seed.
seed=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

# Pass only the flags this runner has: read them from its help.
help=$("$bin/lodestar" -h 2>&1 || true)
has_flag() { grep -qE -- "^[[:space:]]+-$1([[:space:]]|$)" <<<"$help"; }
args=()
has_flag data-dir && args+=(-data-dir "$demo_dir")
has_flag http.listen-addr && args+=(-http.listen-addr "$http_addr")
has_flag grpc.listen-addr && args+=(-grpc.listen-addr "$grpc_addr")
has_flag auth.demo-key-seed && args+=(-auth.demo-key-seed "$seed")
# The simulated product is scored with its own scorecard: its core events and milestones.
has_flag scoring.scorecard-file && args+=(-scoring.scorecard-file tools/loadgen/sim/scorecard.yaml)

lodestar_pid= loadgen_pid=
stop() {
	trap '' INT TERM # stopping takes a few seconds; let it finish
	echo
	echo "Stopping..."
	# Background jobs of a script ignore SIGINT, so they are stopped here:
	# the events first, then Lodestar, which drains and shuts down cleanly.
	for pid in $loadgen_pid $lodestar_pid; do
		kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	done
	echo "Stopped. Logs: $lodestar_log, $loadgen_log"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "Starting Lodestar: bin/lodestar ${args[*]}"
"$bin/lodestar" "${args[@]}" >"$lodestar_log" 2>&1 &
lodestar_pid=$!
for ((i = 0; ; i++)); do
	if ! kill -0 "$lodestar_pid" 2>/dev/null; then
		lodestar_pid=
		echo "run-demo: Lodestar exited at start; the end of $lodestar_log:" >&2
		tail -n 20 "$lodestar_log" >&2
		exit 1
	fi
	curl -fsS -o /dev/null "http://$http_addr/healthz" 2>/dev/null && break
	if ((i == 240)); then
		echo "run-demo: Lodestar not ready after 2 minutes; see $lodestar_log" >&2
		exit 1
	fi
	sleep 0.5
done

# The keys follow from the seed; a runner without -auth.demo-key-seed prints
# random ones at start-up.
write_key=wk_demo_$seed api_key=ak_demo_$seed
if ! has_flag auth.demo-key-seed; then
	write_key=$(grep -oE 'wk_[A-Za-z0-9_]+' "$lodestar_log" | head -n 1)
	api_key=$(grep -oE 'ak_[A-Za-z0-9_]+' "$lodestar_log" | head -n 1)
fi

"$bin/loadgen" -scenario demo -http.url "http://$http_addr" -grpc.addr "$grpc_addr" \
	-write-key "$write_key" -api-key "$api_key" >"$loadgen_log" 2>&1 &
loadgen_pid=$!

cat <<EOF

Lodestar is up, and loadgen plays 300 accounts: 45 days of history first (about a
minute), then live: the simulated product's working hours at 60x (an hour a minute),
whatever the wall clock says.
  Console           http://$http_addr/  (sign in with the API key $api_key)
  Segment HTTP API  http://$http_addr/v1/batch  (write key $write_key)
  gRPC API          $grpc_addr  (API key $api_key; reflection on)
  Logs              $lodestar_log, $loadgen_log

In another terminal:
  export LODESTAR_API_KEY=$api_key LODESTAR_ADDR=$grpc_addr WRITE_KEY=$write_key
  bin/lodestarctl worst -n 20              # the worst accounts, each with why
  bin/lodestarctl score acct-00001         # the full explanation
  bin/lodestarctl history acct-00001
  bin/lodestarctl alerts list              # open alerts; then alerts ack|snooze|resolve ID
  bin/lodestarctl alerts watch             # alerts as they happen
  bin/lodestarctl renewals                 # renewals in the next 90 days, with probabilities
  bin/lodestarctl forecast -by owner       # GRR, NRR and logo retention with ranges
  bin/lodestarctl scorecard get            # the scorecard, as YAML
  bin/lodestarctl rules list               # the alert rules
  Add -json to any command for scripts; grpcurl works too (reflection is on).

The worst 10 accounts and the open alerts every ${interval}s; Ctrl-C stops the demo.
EOF

while :; do
	# In the background, so that Ctrl-C is handled at once.
	sleep "$interval" &
	wait $! || true
	for pid in $lodestar_pid $loadgen_pid; do
		if ! kill -0 "$pid" 2>/dev/null; then
			[[ $pid == "$lodestar_pid" ]] && lodestar_pid= || loadgen_pid=
			echo "run-demo: a process stopped; the ends of the logs:" >&2
			tail -n 5 "$lodestar_log" "$loadgen_log" >&2
			exit 1
		fi
	done
	echo
	echo "=== $(date +%T)  $(tail -n 1 "$loadgen_log")"
	"$bin/lodestarctl" -addr "$grpc_addr" -api-key "$api_key" worst -n 10 || true
	"$bin/lodestarctl" -addr "$grpc_addr" -api-key "$api_key" alerts list -n 5 || true
done
