#!/usr/bin/env bash
# Long libFuzzer runs of the agent firmware's harnesses (agent_firmware/fuzz/fuzz_*.c).
#   bench/fuzz.sh [SECONDS_PER_HARNESS] [HARNESS...]      e.g. bench/fuzz.sh 60 engine proto
# Defaults: 60 s each, every harness, one after the other (one core each). Each run starts from the
# committed seeds (agent_firmware/fuzz/corpus/<name>) plus what earlier runs of this script found
# (agent_firmware/build/fuzz/long/<name>, not committed). Prints per harness: executions, exec/s,
# libFuzzer's final cov:/ft: and the crash reproducers written (agent_firmware/build/fuzz/artifacts/).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
fw="$here/agent_firmware"
secs="${1:-60}"
shift || true
make -s -C "$fw" fuzz
if ! ls "$fw"/build/fuzz/fuzz_* >/dev/null 2>&1; then
    echo "bench/fuzz.sh: no harness built (clang with libFuzzer missing?)" >&2
    exit 1
fi
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in "$fw"/fuzz/fuzz_*.c; do n="${f##*/fuzz_}"; names+=("${n%.c}"); done
fi
echo "load before: $(uptime)"
echo "harness      seconds  executions  exec/s  cov   ft     crashes"
status=0
for n in "${names[@]}"; do
    bin="$fw/build/fuzz/fuzz_$n"
    long="$fw/build/fuzz/long/$n"
    art="$fw/build/fuzz/artifacts"
    log="$fw/build/fuzz/long_$n.log"
    mkdir -p "$long" "$art"
    before=$(ls "$art" | grep -c "^$n-" || true)
    rc=0
    "$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$art/$n-" \
        "$long" "$fw/fuzz/corpus/$n" >"$log" 2>&1 || rc=$?
    execs=$(awk '/^stat::number_of_executed_units/ {print $2}' "$log")
    rate=$(awk '/^stat::average_exec_per_sec/ {print $2}' "$log")
    covft=$(grep -E 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 | sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+).*/\1 \2/')
    after=$(ls "$art" | grep -c "^$n-" || true)
    printf '%-12s %-8s %-11s %-7s %-5s %-6s %s\n' "$n" "$secs" "${execs:-?}" "${rate:-?}" \
        ${covft:-? ?} "$((after - before))"
    if [ "$rc" -ne 0 ]; then
        status=1
        echo "  fuzz_$n exited $rc: see $log" >&2
        grep -E 'ERROR|runtime error|SUMMARY' "$log" | head -n 5 >&2 || true
    fi
done
echo "load after: $(uptime)"
exit "$status"
