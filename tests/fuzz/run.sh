#!/usr/bin/env bash
# Runs every libFuzzer target of a build made with -Dfuzzers=true for a fixed number of
# inputs from a fixed seed (-seed=1 -runs=N), so that a run takes a known time. Runs are
# close to but not exactly alike (libFuzzer also learns from comparisons of addresses and
# from stack depth, and cert_der_fuzz's seeds are new keys each time): a reproducer, not a
# seed, is what replays a failure.
# Starts from the seeds in tests/fuzz/corpus/<target> (and tests/acme/data for the ACME
# parsers, and a certificate and keys made here by openssl for cert_der_fuzz); what the
# run finds goes to a scratch directory, which is removed unless something failed.
#
# usage: tests/fuzz/run.sh BUILD_DIR [SCALE]
#   SCALE multiplies every target's run count (default 1).
# Prints one line per target and, last, "fuzz: N passed, N failed". Exits 1 when a target
# crashed, leaked, hung or tripped UBSan; its reproducer and log stay in the scratch directory.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$(cd "${1:?usage: run.sh BUILD_DIR [SCALE]}" && pwd)"
scale="${2:-1}"

# Runs per target: each takes a few seconds on one core with ASan+UBSan. cert_der_fuzz
# goes through OpenSSL's key decoders, some 500 inputs a second, hence its smaller count.
targets=(
  "tls/cert_der_fuzz 10000"
  "http/http_parser_fuzz 1000000"
  "acme/acme_parse_fuzzer 200000"
  "acme/order_machine_fuzz 100000"
  "store/store_replay_fuzz 200000"
)

work="$(mktemp -d /tmp/le-fuzz.XXXXXX)"
# UBSan reports must end the run, or libFuzzer would not see them.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ]; then
  for s in llvm-symbolizer llvm-symbolizer-16 llvm-symbolizer-14; do
    if command -v "$s" >/dev/null; then export ASAN_SYMBOLIZER_PATH="$(command -v "$s")"; break; fi
  done
fi

# Certificates are made at run time, never kept in the tree: a P-256 and an RSA leaf, each
# with its PKCS#8 key, and each pair as cert_der_fuzz splits its input.
certs="$work/seed-cert"
mkdir -p "$certs"
for alg in ec rsa; do
  if [ $alg = ec ]; then newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256); else newkey=(-newkey rsa:2048); fi
  openssl req -x509 "${newkey[@]}" -nodes -keyout "$work/$alg.pem" -subj /CN=a.test \
    -addext subjectAltName=DNS:a.test -days 1 -outform DER -out "$certs/$alg-cert.der" 2>/dev/null &&
  openssl pkcs8 -topk8 -nocrypt -in "$work/$alg.pem" -outform DER -out "$certs/$alg-key.der" &&
  openssl x509 -inform DER -in "$certs/$alg-cert.der" -out "$certs/$alg-cert.pem" &&
  python3 - "$certs/$alg-cert.der" "$certs/$alg-key.der" "$certs/$alg-pair.bin" <<'PY' || echo "fuzz: no $alg seed (openssl failed)"
import struct, sys
c = open(sys.argv[1], 'rb').read()
k = open(sys.argv[2], 'rb').read()
open(sys.argv[3], 'wb').write(c + k + struct.pack('<H', len(c)))
PY
  rm -f "$work/$alg.pem"
done

passed=0 failed=0
for t in "${targets[@]}"; do
  set -- $t
  path=$1 name=$(basename "$1") runs=$(( $2 * scale ))
  exe="$build/tests/$path"
  seeds=()
  [ -d "$here/corpus/$name" ] && seeds+=("$here/corpus/$name")
  case $name in
    acme_parse_fuzzer) seeds+=("$root/tests/acme/data") ;;
    cert_der_fuzz) seeds+=("$certs") ;;
  esac
  if [ ! -x "$exe" ]; then
    echo "fuzz: $name: not built ($exe)"; failed=$((failed + 1)); continue
  fi
  mkdir -p "$work/$name/corpus"
  start=$(date +%s.%N)
  "$exe" -seed=1 -runs="$runs" -timeout=25 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$work/$name/" "$work/$name/corpus" "${seeds[@]}" >"$work/$name.log" 2>&1
  rc=$?
  secs=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
  cov=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$work/$name.log" | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [^ ]+' | tail -1)
  if [ $rc -eq 0 ]; then
    echo "fuzz: $name: ok, $runs runs in ${secs}s, ${cov:-no stats}"
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "fuzz: $name: FAILED (exit $rc) after ${secs}s; log $work/$name.log"
    grep -E 'ERROR|SUMMARY|runtime error|^ +#[0-9]+ ' "$work/$name.log" | head -30
    for a in "$work/$name"/crash-* "$work/$name"/leak-* "$work/$name"/timeout-* "$work/$name"/oom-*; do
      [ -f "$a" ] || continue
      echo "fuzz: $name: reproducer $a (base64 below; replay with: $exe FILE)"
      base64 -w 76 "$a" | head -60
    done
  fi
done

if [ $failed -eq 0 ]; then rm -rf "$work"; else echo "fuzz: logs and reproducers kept in $work"; fi
echo "fuzz: $passed passed, $failed failed"
[ $failed -eq 0 ]
