#!/usr/bin/env bash
# Blue/green deploy on one host, failing safe at every step.
#
#   config/deploy.sh COLOR START_CMD STOP_CMD
#
# e.g. config/deploy.sh green "systemctl start app@green" "systemctl stop app@blue"
#
# 1. start the new color (START_CMD), 2. wait until its health URL answers 2xx,
# 3. `switchyard switch COLOR` (validates, reloads, waits for the daemon to confirm),
# 4. watch /readyz for a while, 5. stop the old color (STOP_CMD).
# Any failure before step 5 leaves the old color serving and running; the script exits 1.
#
# Environment: HEALTH_URL (required: the new color's own health URL, e.g.
# http://127.0.0.1:8081/actuator/health), SWITCHYARD_CONFIG (default
# /etc/switchyard/switchyard.toml), READY_URL (default http://127.0.0.1/readyz),
# HEALTH_TIMEOUT seconds (default 120), WATCH seconds (default 30).
set -euo pipefail

color=${1:?usage: deploy.sh COLOR START_CMD STOP_CMD}
start_cmd=${2:?usage: deploy.sh COLOR START_CMD STOP_CMD}
stop_cmd=${3:?usage: deploy.sh COLOR START_CMD STOP_CMD}
config=${SWITCHYARD_CONFIG:-/etc/switchyard/switchyard.toml}
health_url=${HEALTH_URL:?set HEALTH_URL to the new color health check, e.g. http://127.0.0.1:8081/health}
ready_url=${READY_URL:-http://127.0.0.1/readyz}
health_timeout=${HEALTH_TIMEOUT:-120}
watch=${WATCH:-30}

say() { printf '%s deploy: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

command -v switchyard >/dev/null || fail "switchyard is not on PATH"
switchyard check --config "$config" >/dev/null || fail "the current config does not validate; fix it first"

say "starting $color: $start_cmd"
bash -c "$start_cmd" || fail "could not start $color; nothing was switched"

say "waiting up to ${health_timeout}s for $health_url"
deadline=$((SECONDS + health_timeout))
until curl -fsS -o /dev/null --max-time 2 "$health_url"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$color never became healthy; nothing was switched (stop it yourself if needed)"
    sleep 1
done

say "switching traffic to $color"
switchyard switch "$color" --config "$config" || fail "switch refused; the old color keeps serving"

say "watching $ready_url for ${watch}s"
deadline=$((SECONDS + watch))
while [ "$SECONDS" -lt "$deadline" ]; do
    if ! curl -fsS -o /dev/null --max-time 2 "$ready_url"; then
        fail "$ready_url failed after the switch; roll back with: switchyard switch <old color> (old color still running)"
    fi
    sleep 2
done

say "stopping the old color: $stop_cmd"
bash -c "$stop_cmd" || fail "could not stop the old color (traffic is on $color)"
say "done: $color is live"
