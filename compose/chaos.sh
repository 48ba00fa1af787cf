#!/bin/sh
# Chaos for the compose stack: take payments-2 away and bring it back, over and over.
#
# Odd rounds stop payments-2's sidecar (connect failures: orders' sidecar retries on another
# replica and ejects this one); even rounds freeze the payments-2 app with `docker pause`
# (timeouts through a live sidecar, then Consul's check turns critical and the SRV answer
# drops it). Runs inside the `chaos` profile's docker CLI container, or from a host shell:
#   docker compose --profile chaos up -d      or      sh compose/chaos.sh
set -eu

PROJECT="${COMPOSE_PROJECT:-pilotfish}"
DOWN="${CHAOS_DOWN_SECONDS:-20}"
UP="${CHAOS_UP_SECONDS:-25}"

container() {
    docker ps -aq \
        --filter "label=com.docker.compose.project=${PROJECT}" \
        --filter "label=com.docker.compose.service=$1"
}

round=0
while true; do
    sleep "$UP"
    round=$((round + 1))
    if [ $((round % 2)) -eq 1 ]; then
        echo "chaos round ${round}: stopping payments-2-sidecar for ${DOWN}s"
        docker stop "$(container payments-2-sidecar)" >/dev/null
        sleep "$DOWN"
        docker start "$(container payments-2-sidecar)" >/dev/null
    else
        echo "chaos round ${round}: pausing payments-2 for ${DOWN}s"
        docker pause "$(container payments-2)" >/dev/null
        sleep "$DOWN"
        docker unpause "$(container payments-2)" >/dev/null
    fi
    echo "chaos round ${round}: payments-2 is back"
done
