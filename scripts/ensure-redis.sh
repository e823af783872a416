#!/usr/bin/env bash
# Makes sure a Redis answers on 127.0.0.1:6379 for the tests: starts one, and
# installs Debian's redis-server first when the machine has none.
set -euo pipefail

redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c5 <&3 | grep -q PONG) 2>/dev/null; }

redis_up && exit 0
if ! command -v redis-server >/dev/null; then
	echo "ensure-redis: installing redis-server"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq && $sudo apt-get install -y -qq redis-server >/dev/null
fi
echo "ensure-redis: starting redis-server on 127.0.0.1:6379"
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
for _ in $(seq 50); do redis_up && exit 0; sleep 0.1; done
echo "ensure-redis: redis is not reachable on 127.0.0.1:6379" >&2
exit 1
