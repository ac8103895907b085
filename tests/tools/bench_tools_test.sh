#!/usr/bin/env bash
# The benchmark tools serve what they are given: gen-certs writes K certificates, bench_server
# loads them (eager and deferred, one shared key and a key per leaf), and handshake-bench's
# full handshakes, each verifying the chain against the CA and the name it asked for, all
# succeed for every name. Usage: bench_tools_test.sh GEN_CERTS BENCH_SERVER HANDSHAKE_BENCH
set -euo pipefail
gen=$1 server=$2 bench=$3
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$work/server.log" ] && sed 's/^/  server: /' "$work/server.log"; exit 1; }

names=5
for keys in shared distinct; do
  dir=$work/certs-$keys
  flag=""; [ $keys = distinct ] && flag=--distinct-keys
  "$gen" --out "$dir" --count $names $flag >/dev/null || fail "gen-certs $keys"
  n=$(find "$dir/certs" -name "*.key" | wc -l)
  if [ $keys = distinct ]; then [ "$n" -eq $names ] || fail "$n leaf keys, want $names"
  else [ "$n" -eq 0 ] && [ -f "$dir/shared.key" ] || fail "no shared key"; fi
  for load in eager deferred; do
    opt=""; [ $load = deferred ] && opt=--deferred
    "$server" --certs "$dir" --port 0 $opt >"$work/server.log" 2>&1 &
    pid=$!
    port=""
    for _ in $(seq 1 200); do
      port=$(sed -n 's/^ready port=\([0-9]*\).*/\1/p' "$work/server.log")
      [ -n "$port" ] && break
      kill -0 "$pid" 2>/dev/null || fail "bench_server ($keys keys, $load) exited"
      sleep 0.05
    done
    [ -n "$port" ] || fail "bench_server ($keys keys, $load) not ready"
    grep -q "^certificates=$names\$" "$work/server.log" || fail "bench_server ($keys keys, $load) did not load $names certificates"
    out=$("$bench" --port "$port" --mode full -c 2 -n 40 --warmup 0 -d 20 \
      --sni-file "$dir/names.txt" --verify "$dir/ca.crt" --json) || fail "handshake-bench ($keys keys, $load): $out"
    python3 - "$out" "$keys keys, $load" <<'PY' || fail "handshake-bench ($keys keys, $load)"
import json, sys
r = json.loads(sys.argv[1])
if r["handshakes"] < 40 or r["failures"] != 0 or r["errors"]:
    print(f"{sys.argv[2]}: {r['handshakes']} handshakes, {r['failures']} failures, errors {r['errors']}, first {r.get('first_error')}")
    sys.exit(1)
print(f"{sys.argv[2]}: {r['handshakes']} verified handshakes over {r['names']} names")
PY
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  done
done
