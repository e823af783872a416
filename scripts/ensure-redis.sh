#!/usr/bin/env bash
# Makes sure the tests have their Redis: one answering on 127.0.0.1:6379
# (started here when none does), and redis-server and redis-cli on the PATH,
# with which tests start Redis Clusters of their own. Installs Debian's
# redis-server and redis-tools first when the machine lacks them.
set -euo pipefail

redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c5 <&3 | grep -q PONG) 2>/dev/null; }

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
if [ ${#missing[@]} -gt 0 ]; then
	echo "ensure-redis: installing ${missing[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

redis_up && exit 0
echo "ensure-redis: starting redis-server on 127.0.0.1:6379"
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
for _ in $(seq 50); do redis_up && exit 0; sleep 0.1; done
echo "ensure-redis: redis is not reachable on 127.0.0.1:6379" >&2
exit 1
