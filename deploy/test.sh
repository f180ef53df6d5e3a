#!/usr/bin/env bash
# The deployment test with Docker Compose: deploy/compose.yaml, the file users run, brought up
# with an image built offline from a given wsfleet binary (deploy/image/build.sh): a controller,
# three agents and the test server as the target, each container with its own address on private
# networks. Then, through the controller's API and against the target's own counts (/stats):
#
#   1. a run whose totals are exactly the target's counts;
#   2. an agent killed mid-run (docker kill): the scenario's `redistribute` applies, the summary
#      says so, the survivors take its VUs over, the totals never exceed the target's counts;
#   3. an agent cut off from the controller mid-run (docker network disconnect): it stops its load
#      within the silence limit, reattaches when reconnected, and no interval is lost or counted
#      twice (totals exactly the target's counts);
#   4. the controller killed mid-run and started again: agents stop their load and reattach, the
#      run is in the history as `interrupted` with its intervals;
#   5. a run after all that, exact again.
#
#   deploy/test.sh target/debug/wsfleet      (needs docker, docker compose or docker-compose, curl, jq)
#
# Everything it creates (containers, networks, volume, image) is removed at the end, even on
# failure; every wait is bounded. It prints each check and exits non-zero with the figures when
# one fails.
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
if docker compose version >/dev/null 2>&1; then
    compose_cli=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose_cli=(docker-compose)
else
    fail "neither \`docker compose\` nor docker-compose is installed"
fi

test_started=$(date +%s%N)
project=wsfleet-test-$$
image=wsfleet-test:$$-$RANDOM
# Compose warns at every command that it ignores `deploy.endpoint_mode` (for swarms): hide that.
compose() {
    "${compose_cli[@]}" --project-name "$project" --file "$here/compose.yaml" "$@" \
        2> >(grep -v 'deploy sub-keys are not supported' >&2)
}

cleanup() {
    local status=$?
    set +e
    if [ "$status" != 0 ]; then
        echo "--- the last lines of each container's log:" >&2
        compose logs --no-color --tail 25 >&2 2>&1
    fi
    compose down --volumes --remove-orphans --timeout 1 >/dev/null 2>&1
    docker image rm --force "$image" >/dev/null 2>&1
    echo "removed the project $project and the image $image ($(since "$test_started")s in all)"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "image $image, built offline from $binary"
"$here/image/build.sh" "$binary" "$image"

# The compose file's variables: the offline image, tokens of this run, host ports the system
# picks, a short silence limit so faults show within seconds, and an open-file limit the daemon
# allows.
export WSFLEET_IMAGE=$image
export WSFLEET_TOKEN=agents-$RANDOM$RANDOM WSFLEET_API_TOKEN=api-$RANDOM$RANDOM
export WSFLEET_HTTP_PORT=0 WSFLEET_TARGET_PORT=0 WSFLEET_AGENTS=3
export WSFLEET_HEARTBEAT_INTERVAL=500ms WSFLEET_SILENCE_TIMEOUT=2s
silence=2
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
export WSFLEET_NOFILE=$nofile
API_TOKEN=$WSFLEET_API_TOKEN

say "compose up: project $project"
compose up --detach --no-build --scale agent=3
control_network=$(docker inspect -f '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}' \
    "$(compose ps -q controller)" | tr ' ' '\n' | grep '_control$')
mapfile -t agents < <(compose ps -q agent)
check_eq "agent containers" "${#agents[@]}" 3

# The published ports change when a container starts again: read them each time.
read_ports() {
    local api target
    api=$(compose port controller 7601)
    target=$(compose port testserver 8080)
    API=http://127.0.0.1:${api##*:}
    TARGET=http://127.0.0.1:${target##*:}
}
read_ports
wait_for "the controller's /healthz at $API" 30 healthy
wait_for "three agents to attach" 30 agents_attached 3
echo "controller API at $API, target at $TARGET; agents attached after ${WAITED}s"
addresses=$(for container in $(compose ps -q); do
    docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$container"
done | tr ' ' '\n' | grep -c .)
distinct=$(for container in $(compose ps -q); do
    docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$container"
done | tr ' ' '\n' | grep . | sort -u | wc -l)
check_eq "distinct addresses of the five containers on their networks" "$distinct" "$addresses"

# agent_id CONTAINER: the id the agent in CONTAINER attached with (its default, HOSTNAME-PID).
agent_id() { echo "$(docker inspect -f '{{.Config.Hostname}}' "$1")-1"; }

# ---------------------------------------------------------------------------------------------
say "1. a run through the deployment: totals exactly the target's counts"
BEFORE=$(stats)
start_run /scenarios/echo.yaml
finish_run 60
wait_for "the target to hold no connection" 10 open_connections_are 0
AFTER=$(stats)
check_eq "outcome" "$(jq -r .outcome <<<"$SUMMARY")" completed
check_eq "agents in the summary" "$(jq '.agents | length' <<<"$SUMMARY")" 3
check_eq "connections_opened (30 VUs x 2 iterations)" "$(counter connections_opened)" 60
check_eq "messages_sent (x 10 messages)" "$(counter messages_sent)" 600
check_exact

# ---------------------------------------------------------------------------------------------
say "2. docker kill of an agent mid-run (on_agent_lost: redistribute)"
victim=${agents[1]}
victim_id=$(agent_id "$victim")
BEFORE=$(stats)
start_run /scenarios/lost-agent.yaml
wait_for "the target to hold 30 connections" 30 open_connections_are 30
wait_for "3 s of load" 20 run_seconds_at_least 3
docker kill "$victim" >/dev/null
killed_at=$(date +%s%N)
echo "killed agent $victim_id (container ${victim:0:12})"
wait_for "agent $victim_id to be marked lost" $((silence + 8)) agent_is_lost "$victim_id"
echo "marked lost $(since "$killed_at")s after the kill"
survivors_took_over() {
    [ "$(delta_now total_connections)" = 40 ] && open_connections_are 30
}
delta_now() { echo $(($(stats | jq ".$1") - $(jq ".$1" <<<"$BEFORE"))); }
wait_for "the survivors to take its 10 VUs over (30 open, 40 opened in all)" 10 survivors_took_over
echo "the target holds 30 connections again $(since "$killed_at")s after the kill"
finish_run 40
wait_for "the target to hold no connection" 10 open_connections_are 0
AFTER=$(stats)
check_eq "outcome" "$(jq -r .outcome <<<"$SUMMARY")" "completed with lost agents"
check_eq "lost_agents.policy" "$(jq -r .lost_agents.policy <<<"$SUMMARY")" redistribute
check_eq "lost agents" "$(jq '.lost_agents.events | length' <<<"$SUMMARY")" 1
check_eq "lost agent" "$(jq -r '.lost_agents.events[0].agent' <<<"$SUMMARY")" "$victim_id"
check_eq "what the policy did" "$(jq -r '.lost_agents.events[0].action' <<<"$SUMMARY")" redistributed
check_eq "the lost agent's VUs" "$(jq -r '.lost_agents.events[0].vus' <<<"$SUMMARY")" 10
check_prefix "the lost agent's state" "$(jq -r --arg id "$victim_id" '.agents[] | select(.id == $id) | .state' <<<"$SUMMARY")" lost
check_eq "the survivors' VUs" "$(jq -c --arg id "$victim_id" '[.agents[] | select(.id != $id) | .vus]' <<<"$SUMMARY")" "[15,15]"
check_eq "connections_opened (30, then 10 taken over) = target's new connections" \
    "$(counter connections_opened)" "$(delta total_connections)"
# What the killed agent did in its last second never reached the controller: the totals may fall
# short of the target's counts, never exceed them.
check_le "messages_sent, of the target's messages received" "$(counter messages_sent)" "$(delta messages_received)"
check_le "payload_bytes_sent, of the target's payload bytes received" "$(counter payload_bytes_sent)" "$(delta payload_bytes_received)"
check_le "messages_received, of the target's messages sent" "$(counter messages_received)" "$(delta messages_sent)"
check_intervals_add_up
docker start "$victim" >/dev/null
wait_for "the killed agent's container, started again, to attach" 30 agents_attached 3

# ---------------------------------------------------------------------------------------------
say "3. docker network disconnect of an agent from the controller mid-run (on_agent_lost: continue)"
victim=${agents[2]}
victim_id=$(agent_id "$victim")
BEFORE=$(stats)
start_run /scenarios/partition.yaml
wait_for "the target to hold 30 connections" 30 open_connections_are 30
wait_for "3 s of load" 20 run_seconds_at_least 3
docker network disconnect "$control_network" "$victim"
cut_at=$(date +%s%N)
echo "cut agent $victim_id off $control_network (it still reaches the target)"
# It hears nothing for the silence limit and stops its load: its 10 connections close.
wait_for "the cut-off agent to stop its load" $((silence + 8)) open_connections_are 20
stopped_after=$(since "$cut_at")
echo "the target holds 20 connections ${stopped_after}s after the cut"
check_seconds "from the cut to the load stopped (the silence limit, ${silence} s, + 2 s)" \
    "$stopped_after" $((silence + 2))
wait_for "agent $victim_id to be marked lost" $((silence + 8)) agent_is_lost "$victim_id"
echo "marked lost $(since "$cut_at")s after the cut"
sleep 1.5
docker network connect "$control_network" "$victim"
echo "reconnected $(since "$cut_at")s after the cut"
finish_run 60
wait_for "the target to hold no connection" 10 open_connections_are 0
AFTER=$(stats)
check_eq "outcome" "$(jq -r .outcome <<<"$SUMMARY")" "completed with lost agents"
check_eq "what the policy did" "$(jq -r '.lost_agents.events[0].action' <<<"$SUMMARY")" continued
check_contains "the cut-off agent's state" \
    "$(jq -r --arg id "$victim_id" '.agents[] | select(.id == $id) | .state' <<<"$SUMMARY")" \
    "came back and resent its reports"
echo "reports: $(jq -c .reports <<<"$SUMMARY")"
check_eq "reports dropped by agents" "$(jq .reports.dropped_by_agents <<<"$SUMMARY")" 0
check_eq "connections_opened = target's new connections" "$(counter connections_opened)" "$(delta total_connections)"
check_eq "messages_sent = target's messages received" "$(counter messages_sent)" "$(delta messages_received)"
check_eq "payload_bytes_sent = target's payload bytes received" "$(counter payload_bytes_sent)" "$(delta payload_bytes_received)"
# An echo in flight when a VU is stopped is sent by the target and never read: at most one per VU.
check_le "messages_received, of the target's messages sent" "$(counter messages_received)" "$(delta messages_sent)"
check_le "echoes sent by the target and not read (at most one per VU)" \
    $(($(delta messages_sent) - $(counter messages_received))) 30
check_intervals_add_up

# ---------------------------------------------------------------------------------------------
say "4. the controller killed mid-run and started again"
controller=$(compose ps -q controller)
BEFORE=$(stats)
start_run /scenarios/long.yaml
interrupted=$RUN
wait_for "the target to hold 30 connections" 30 open_connections_are 30
wait_for "3 s of load" 20 run_seconds_at_least 3
docker kill "$controller" >/dev/null
killed_at=$(date +%s%N)
wait_for "the agents to stop their load" $((silence + 8)) open_connections_are 0
stopped_after=$(since "$killed_at")
echo "the target holds no connection ${stopped_after}s after the kill"
check_seconds "from the kill to the load stopped (the silence limit, ${silence} s, + 2 s)" \
    "$stopped_after" $((silence + 2))
AFTER=$(stats)
docker start "$controller" >/dev/null
read_ports
wait_for "the controller's /healthz at $API" 30 healthy
wait_for "three agents to reattach" 30 agents_attached 3
echo "three agents attached again $(since "$killed_at")s after the kill"
check_eq "the run's status in the history" "$(run_status "$interrupted")" interrupted
intervals=$(api "/api/runs/$interrupted/intervals")
kept=$(jq '.intervals | length' <<<"$intervals")
check_ge "intervals kept for the interrupted run" "$kept" 2
opened=$(jq '[.intervals[].counters.connections_opened // 0] | add' <<<"$intervals")
sent=$(jq '[.intervals[].counters.messages_sent // 0] | add' <<<"$intervals")
check_eq "connections_opened in its intervals = target's new connections" "$opened" "$(delta total_connections)"
check_le "messages_sent in its intervals, of the target's messages received" "$sent" "$(delta messages_received)"

# ---------------------------------------------------------------------------------------------
say "5. a run after the restart: exact again"
BEFORE=$(stats)
start_run /scenarios/echo.yaml
finish_run 60
wait_for "the target to hold no connection" 10 open_connections_are 0
AFTER=$(stats)
check_eq "outcome" "$(jq -r .outcome <<<"$SUMMARY")" completed
check_eq "agents in the summary" "$(jq '.agents | length' <<<"$SUMMARY")" 3
check_exact
check_eq "runs in the history" "$(api /api/runs | jq -c '[.runs[].status]')" \
    '["completed","interrupted","completed","completed","completed"]'

say "passed: the Compose deployment ($(since "$test_started")s)"
