# Helpers shared by deploy/test.sh (Compose) and deploy/test-swarm.sh (Swarm): checks that print
# what they compare and stop the test with the figures when one fails, bounded waits, and the
# controller's API and the target's /stats seen from the host. Sourced, not run.
#
# The sourcing script sets API (http://HOST:PORT of the controller's HTTP endpoints), API_TOKEN
# and TARGET (http://HOST:PORT of the test server).

say() { printf '\n== %s\n' "$*"; }

fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

# check_eq WHAT ACTUAL EXPECTED
check_eq() {
    if [ "$2" != "$3" ]; then
        fail "$1: got $2, expected $3"
    fi
    printf 'ok  %s: %s\n' "$1" "$2"
}

# check_le WHAT ACTUAL BOUND: integers, ACTUAL <= BOUND
check_le() {
    if ! [ "$2" -le "$3" ]; then
        fail "$1: got $2, expected at most $3"
    fi
    printf 'ok  %s: %s <= %s\n' "$1" "$2" "$3"
}

# check_ge WHAT ACTUAL BOUND: integers, ACTUAL >= BOUND
check_ge() {
    if ! [ "$2" -ge "$3" ]; then
        fail "$1: got $2, expected at least $3"
    fi
    printf 'ok  %s: %s >= %s\n' "$1" "$2" "$3"
}

# check_seconds WHAT SECONDS BOUND: SECONDS (with decimals) <= BOUND
check_seconds() {
    if ! awk -v s="$2" -v b="$3" 'BEGIN { exit !(s <= b) }'; then
        fail "$1: took ${2}s, more than ${3}s"
    fi
    printf 'ok  %s: %ss <= %ss\n' "$1" "$2" "$3"
}

# check_prefix WHAT TEXT PREFIX
check_prefix() {
    case $2 in
    "$3"*) printf 'ok  %s: %s\n' "$1" "$2" ;;
    *) fail "$1: got \"$2\", expected it to start with \"$3\"" ;;
    esac
}

# check_contains WHAT TEXT PART
check_contains() {
    case $2 in
    *"$3"*) printf 'ok  %s: %s\n' "$1" "$2" ;;
    *) fail "$1: got \"$2\", expected it to contain \"$3\"" ;;
    esac
}

# wait_for WHAT SECONDS COMMAND...: runs COMMAND every 0.2 s until it succeeds; fails after
# SECONDS. Sets WAITED to the seconds it took (with milliseconds).
wait_for() {
    local what=$1 limit=$2
    shift 2
    local start now
    start=$(date +%s%N)
    until "$@" >/dev/null 2>&1; do
        now=$(date +%s%N)
        if [ $(((now - start) / 1000000)) -ge $((limit * 1000)) ]; then
            fail "timed out after ${limit}s waiting for $what"
        fi
        sleep 0.2
    done
    now=$(date +%s%N)
    WAITED=$(awk -v ns=$((now - start)) 'BEGIN { printf "%.1f", ns / 1e9 }')
}

# since NANOSECONDS: seconds elapsed since a `date +%s%N` reading, with one decimal.
since() {
    awk -v ns=$(($(date +%s%N) - $1)) 'BEGIN { printf "%.1f", ns / 1e9 }'
}

api() {
    curl -sS --fail --max-time 5 -H "Authorization: Bearer $API_TOKEN" "$API$1"
}

api_post() {
    curl -sS --max-time 5 -H "Authorization: Bearer $API_TOKEN" -H 'Content-Type: application/json' \
        -d "$2" -w '\n%{http_code}' "$API$1"
}

healthy() { curl -sS --fail --max-time 2 "$API/healthz" >/dev/null; }

stats() { curl -sS --fail --max-time 5 "$TARGET/stats"; }

# open_connections_are N: the target holds exactly N WebSocket connections.
open_connections_are() { [ "$(stats | jq .open_connections)" = "$1" ]; }

# agents_attached N: N agents hold a stream to the controller (an agent lost in the last run that
# came back is attached, but keeps the state `lost` until the next run).
agents_attached() {
    [ "$(api /api/status | jq '[.agents[] | select(.address != null)] | length')" = "$1" ]
}

# agent_state ID: the state of agent ID in /api/status.
agent_state() {
    api /api/status | jq -r --arg id "$1" '.agents[] | select(.id == $id) | .state'
}

agent_is_lost() { [ "$(agent_state "$1")" = lost ]; }

run_seconds_at_least() {
    api /api/status | jq -e --argjson s "$1" '.run.running == true and .run.seconds >= $s' >/dev/null
}

newest_run() { api /api/runs | jq -r '.runs[0].id // empty'; }

run_status() { api "/api/runs/$1" | jq -r .run.status; }

run_ended() { [ "$(run_status "$1")" != running ]; }

# start_run SCENARIO_PATH: starts a run of a file on the controller and sets RUN to its id.
start_run() {
    local previous answer code
    previous=$(newest_run)
    answer=$(api_post /api/runs "{\"path\": \"$1\"}")
    code=${answer##*$'\n'}
    [ "$code" = 202 ] || fail "POST /api/runs $1: HTTP $code: ${answer%$'\n'*}"
    new_run() { RUN=$(newest_run) && [ -n "$RUN" ] && [ "$RUN" != "$previous" ]; }
    wait_for "the run of $1 to appear in /api/runs" 15 new_run
    RUN=$(newest_run)
    echo "run $RUN of $1 started"
}

# finish_run SECONDS: waits for run $RUN to end; sets SUMMARY to its JSON summary.
finish_run() {
    wait_for "run $RUN to end" "$1" run_ended "$RUN"
    SUMMARY=$(api "/api/runs/$RUN/summary.json")
    echo "run $RUN ended after ${WAITED}s more: $(jq -r .outcome <<<"$SUMMARY")"
}

counter() { jq -r --arg name "$1" '.totals.counters[$name] // 0' <<<"$SUMMARY"; }

# delta FIELD: what the target counted in FIELD between $BEFORE and $AFTER (two /stats answers).
delta() {
    echo $(($(jq ".$1" <<<"$AFTER") - $(jq ".$1" <<<"$BEFORE")))
}

# The per-second series adds up to the totals: no interval counted twice or left out of them.
check_intervals_add_up() {
    local name sum
    for name in connections_opened messages_sent messages_received payload_bytes_sent; do
        sum=$(jq --arg name "$name" '[.intervals[].counters[$name] // 0] | add // 0' <<<"$SUMMARY")
        check_eq "$name summed over the summary's $(jq '.intervals | length' <<<"$SUMMARY") intervals" \
            "$sum" "$(counter "$name")"
    done
}

# check_exact: the summary's totals are exactly the target's own counts over the run.
check_exact() {
    check_eq "connections_opened = target's new connections" "$(counter connections_opened)" "$(delta total_connections)"
    check_eq "messages_sent = target's messages received" "$(counter messages_sent)" "$(delta messages_received)"
    check_eq "payload_bytes_sent = target's payload bytes received" "$(counter payload_bytes_sent)" "$(delta payload_bytes_received)"
    check_eq "messages_received = target's messages sent" "$(counter messages_received)" "$(delta messages_sent)"
    check_eq "payload_bytes_received = target's payload bytes sent" "$(counter payload_bytes_received)" "$(delta payload_bytes_sent)"
    check_eq "connections_failed" "$(counter connections_failed)" 0
    check_intervals_add_up
}
