#!/usr/bin/env bash
# xferbench net against iperf3, both memory to memory TCP, at -P 1 and -P 4 with the same duration,
# on loopback and (as root) between the two network namespaces of scripts/lab.sh.
# Each round runs every scenario once with both tools, alternating which tool goes first, so
# drift hits both alike. Prints each round, then a table of medians and the ratio xferbench / iperf3.
#
# usage: scripts/compare-net.sh [ROUNDS] [SECS]
#        defaults: 5 rounds, 5 s per run
# environment: XFERBENCH     the binary to test (default: target/release/xferbench, built here)
#              XFERBENCH_PORT, IPERF3_PORT   server ports (default 5301, 5302)
#              LAB_ARGS      options for `scripts/lab.sh up`, e.g. "--rate 10gbit --mtu 9000"
#              LAB_PREFIX, LAB_SUBNET        passed on to scripts/lab.sh
# Only loopback and the lab's own addresses are ever used. As root the lab is (re)created at the
# start and taken down at the end.
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh" || exit 1
rounds=${1:-5}
secs=${2:-5}
xport=${XFERBENCH_PORT:-5301}
iport=${IPERF3_PORT:-5302}
lab_args=${LAB_ARGS:-}

need_posint ROUNDS "$rounds"
need_posint SECS "$secs"
need iperf3 iperf3
need_python3

work=$(mktemp -d "${TMPDIR:-/tmp}/xferbench-compare-net.XXXXXX")
remove_on_exit "$work"

use_xferbench
token=$(new_token)

# wait_for LOG PATTERN PID WHAT: until LOG has a line matching PATTERN (at most ~10 s).
wait_for() { wait_ready "$1" "$2" "$3" "$4" "exited before it was ready" "$1" "$1.err"; }

# start_servers NAME ADDR [NETNS]: xferbench serve and iperf3 -s listening on ADDR.
start_servers() {
  local name=$1 addr=$2 pre=()
  if [ $# -ge 3 ]; then pre=(ip netns exec "$3"); fi
  "${pre[@]}" "$xferbench" serve --listen "$addr:$xport" --token "$token" \
    >"$work/$name.serve" 2>"$work/$name.serve.err" &
  track_pid $!
  wait_for "$work/$name.serve" '^listening on' $! "xferbench serve on $addr:$xport"
  "${pre[@]}" iperf3 -s -B "$addr" -p "$iport" --forceflush >"$work/$name.iperf3" 2>"$work/$name.iperf3.err" &
  track_pid $!
  wait_for "$work/$name.iperf3" 'Server listening' $! "iperf3 -s on $addr:$iport"
}

# run_tool TOOL ADDR P [NETNS] -> bits per second on stdout
run_tool() {
  local tool=$1 addr=$2 p=$3 pre=() out=$work/client.json
  if [ $# -ge 4 ]; then pre=(ip netns exec "$4"); fi
  if [ "$tool" = xferbench ]; then
    if ! timeout $((secs + 60)) "${pre[@]}" "$xferbench" net "$addr:$xport" -P "$p" -t "$secs" --token "$token" -J \
        >"$out" 2>"$work/client.err"; then
      echo "compare-net: xferbench net $addr:$xport -P $p failed:" >&2; cat "$work/client.err" >&2; exit 1
    fi
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["directions"][0]["receiver"]["bytes_per_sec"] * 8)' "$out"
  else
    if ! timeout $((secs + 60)) "${pre[@]}" iperf3 -c "$addr" -p "$iport" -P "$p" -t "$secs" -J \
        >"$out" 2>"$work/client.err"; then
      echo "compare-net: iperf3 -c $addr -p $iport -P $p failed:" >&2; cat "$work/client.err" "$out" >&2; exit 1
    fi
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"])' "$out"
  fi
}

# scenarios: "label|addr|client netns"
scenarios=("loopback -P 1|127.0.0.1|" "loopback -P 4|127.0.0.1|")
start_servers loopback 127.0.0.1
if [ "$(id -u)" -eq 0 ]; then
  # shellcheck disable=SC2086 # LAB_ARGS is a list of options
  lab_up $lab_args
  start_servers lab "$lab_addr" "$ns_b"
  scenarios+=("lab -P 1|$lab_addr|$ns_a" "lab -P 4|$lab_addr|$ns_a")
else
  echo "note: not root, so loopback only (the namespace lab needs root: sudo scripts/compare-net.sh)"
fi

echo "memory to memory TCP, $secs s per run, $rounds rounds, alternating which tool goes first"
machine_line
echo "$(iperf3 --version | head -n1)  xferbench $("$xferbench" --version | cut -d' ' -f2)"
results=$work/results
: >"$results"
for round in $(seq 1 "$rounds"); do
  for sc in "${scenarios[@]}"; do
    IFS='|' read -r label addr ns <<<"$sc"
    p=${label##* }
    args=("$addr" "$p")
    if [ -n "$ns" ]; then args+=("$ns"); fi
    if [ $((round % 2)) -eq 1 ]; then
      x=$(run_tool xferbench "${args[@]}"); i=$(run_tool iperf3 "${args[@]}")
    else
      i=$(run_tool iperf3 "${args[@]}"); x=$(run_tool xferbench "${args[@]}")
    fi
    echo "$label|$i|$x" >>"$results"
    printf 'round %d  %-14s iperf3 %6s  xferbench %6s Gb/s\n' "$round" "$label" "$(giga "$i")" "$(giga "$x")"
  done
done

python3 - "$results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, i, x = line.rstrip("\n").split("|")
    rows.setdefault(label, []).append((float(i), float(x)))
print()
print(f"{'scenario':<16} {'iperf3 Gb/s':>12} {'xferbench Gb/s':>15} {'ratio':>7}")
for label, runs in rows.items():
    i = statistics.median(r[0] for r in runs)
    x = statistics.median(r[1] for r in runs)
    ratio = x / i if i else float("nan")
    print(f"{label:<16} {i/1e9:>12.2f} {x/1e9:>15.2f} {ratio:>7.3f}   "
          f"(iperf3 {i/8e6:,.0f} MB/s, xferbench {x/8e6:,.0f} MB/s)")
print("medians; ratio = xferbench / iperf3")
EOF
