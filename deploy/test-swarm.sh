#!/usr/bin/env bash
# The deployment test with Docker Swarm: a single-node swarm, `docker stack deploy` of
# deploy/compose.yaml (the file users run) with an image built offline from a given wsfleet binary
# (deploy/image/build.sh), and `docker service scale` of the agents:
#
#   1. a run with 2 agents: totals exactly the target's counts, 15 VUs each;
#   2. scaled to 3 agents: a run exact again, 10 VUs each;
#   3. scaled down to 2 during a run: the removed agent's share is lost (`continue`), the totals
#      never exceed the target's counts.
#
#   deploy/test-swarm.sh target/debug/wsfleet     (needs docker, curl, jq)
#
# It does not touch a machine that is already in a swarm: it says so and exits 0. Otherwise it
# starts the swarm itself and leaves it at the end, even on failure, with everything the stack
# made (services, networks, the history volume, the image). Every wait is bounded.
#
# The compose file needs no IPVS, which some hosts (CI's) lack and without which a swarm's virtual
# IPs and routing mesh do not work: the controller and the test server are `endpoint_mode: dnsrr`
# and publish their ports in `host` mode.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 WSFLEET_BINARY   (e.g. $0 target/debug/wsfleet)" >&2
    exit 2
fi
binary=$1
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=deploy/test-lib.sh
. "$here/test-lib.sh"
for tool in docker curl jq; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (apt-get install $tool)"
done

swarm_state=$(docker info --format '{{.Swarm.LocalNodeState}}')
if [ "$swarm_state" != inactive ]; then
    echo "skipped: this Docker engine is already in a swarm (state: $swarm_state); the test starts and leaves its own"
    exit 0
fi

test_started=$(date +%s%N)
stack=wsfleet-swarm-$$
image=wsfleet-test:$$-$RANDOM
gwbridge_existed=$(docker network ls --quiet --filter name='^docker_gwbridge$')

stack_containers() { docker ps --all --quiet --filter "label=com.docker.stack.namespace=$stack"; }

cleanup() {
    local status=$?
    set +e
    if [ "$status" != 0 ]; then
        echo "--- the last lines of each service's log:" >&2
        for service in controller agent testserver; do
            docker service logs --tail 25 "${stack}_$service" >&2 2>&1
        done
    fi
    docker stack rm "$stack" >/dev/null 2>&1
    # Kill the tasks rather than wait for their orderly stop: nothing is measured any more.
    stack_containers | xargs -r docker kill >/dev/null 2>&1
    docker swarm leave --force >/dev/null 2>&1
    stack_containers | xargs -r docker rm --force >/dev/null 2>&1
    for _ in $(seq 50); do
        [ -z "$(docker network ls --quiet --filter name="^${stack}_")" ] && break
        sleep 0.2
    done
    docker volume rm "${stack}_history" >/dev/null 2>&1
    if [ -z "$gwbridge_existed" ]; then
        docker network rm docker_gwbridge >/dev/null 2>&1
    fi
    docker image rm --force "$image" >/dev/null 2>&1
    echo "left the swarm; removed the stack $stack and the image $image ($(since "$test_started")s in all)"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "image $image, built offline from $binary"
"$here/image/build.sh" "$binary" "$image"

say "single-node swarm, stack $stack with 2 agents"
docker swarm init --advertise-addr 127.0.0.1 >/dev/null
export WSFLEET_IMAGE=$image
export WSFLEET_TOKEN=agents-$RANDOM$RANDOM WSFLEET_API_TOKEN=api-$RANDOM$RANDOM
export WSFLEET_HTTP_PORT=0 WSFLEET_TARGET_PORT=0
export WSFLEET_AGENTS=2 WSFLEET_HEARTBEAT_INTERVAL=500ms WSFLEET_SILENCE_TIMEOUT=2s
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
export WSFLEET_NOFILE=$nofile
API_TOKEN=$WSFLEET_API_TOKEN
docker stack deploy --compose-file "$here/compose.yaml" "$stack"

# port SERVICE PORT: the host port that SERVICE's running task publishes PORT on.
port() {
    local container
    container=$(docker ps --quiet --filter "label=com.docker.swarm.service.name=${stack}_$1" | head -n 1)
    [ -n "$container" ] || return 1
    docker port "$container" "$2/tcp" | head -n 1 | sed 's/.*://'
}
tasks_running() { [ -n "$(port controller 7601)" ] && [ -n "$(port testserver 8080)" ]; }
wait_for "the controller's and the target's tasks to run" 60 tasks_running
API=http://127.0.0.1:$(port controller 7601)
TARGET=http://127.0.0.1:$(port testserver 8080)
wait_for "the controller's /healthz at $API" 30 healthy
wait_for "two agents to attach" 60 agents_attached 2
echo "controller API at $API, target at $TARGET; agents attached after ${WAITED}s"

# exact_run AGENTS VUS_EACH: a run of echo.yaml with AGENTS agents, exact against the target.
exact_run() {
    BEFORE=$(stats)
    start_run /scenarios/echo.yaml
    finish_run 60
    wait_for "the target to hold no connection" 10 open_connections_are 0
    AFTER=$(stats)
    check_eq "outcome" "$(jq -r .outcome <<<"$SUMMARY")" completed
    check_eq "agents in the summary" "$(jq '.agents | length' <<<"$SUMMARY")" "$1"
    check_eq "VUs of each agent" "$(jq -c '[.agents[].vus]' <<<"$SUMMARY")" "$2"
    check_eq "connections_opened (30 VUs x 2 iterations)" "$(counter connections_opened)" 60
    check_eq "messages_sent (x 10 messages)" "$(counter messages_sent)" 600
    check_exact
}

say "1. a run with 2 agents"
exact_run 2 "[15,15]"

say "2. docker service scale ${stack}_agent=3, then a run"
docker service scale --detach "${stack}_agent=3" >/dev/null
wait_for "three agents to attach" 60 agents_attached 3
echo "three agents attached after ${WAITED}s"
exact_run 3 "[10,10,10]"

say "3. docker service scale ${stack}_agent=2 during a run (on_agent_lost: continue)"
BEFORE=$(stats)
start_run /scenarios/partition.yaml
wait_for "the target to hold 30 connections" 30 open_connections_are 30
wait_for "3 s of load" 20 run_seconds_at_least 3
docker service scale --detach "${stack}_agent=2" >/dev/null
scaled_at=$(date +%s%N)
# The task removed gets SIGTERM: its agent stops its load, closes its connections and exits.
wait_for "the removed agent's connections to close" 20 open_connections_are 20
echo "the target holds 20 connections $(since "$scaled_at")s after the scale-down"
finish_run 60
wait_for "the target to hold no connection" 10 open_connections_are 0
AFTER=$(stats)
echo "agents: $(jq -c '[.agents[] | {id, vus, state}]' <<<"$SUMMARY")"
check_eq "agents in the summary" "$(jq '.agents | length' <<<"$SUMMARY")" 3
check_eq "lost_agents.policy" "$(jq -r .lost_agents.policy <<<"$SUMMARY")" continue
check_eq "connections_opened = target's new connections" "$(counter connections_opened)" "$(delta total_connections)"
check_le "messages_sent, of the target's messages received" "$(counter messages_sent)" "$(delta messages_received)"
check_le "payload_bytes_sent, of the target's payload bytes received" "$(counter payload_bytes_sent)" "$(delta payload_bytes_received)"
check_le "messages_received, of the target's messages sent" "$(counter messages_received)" "$(delta messages_sent)"
check_intervals_add_up

say "passed: the Swarm deployment ($(since "$test_started")s)"
