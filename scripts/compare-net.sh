#!/usr/bin/env bash
# xferbench net against iperf3, both memory to memory TCP, at -P 1 and -P 4 with the same duration,
# on loopback and (as root) between the two network namespaces of scripts/lab.sh.
# Each round runs every scenario once with both tools, alternating which tool goes first, so
# drift hits both alike. Prints each round, then a table of medians and the ratio xferbench / iperf3,
# with each tool's CPU seconds per GB on both ends (client here, server there): xferbench's from
# its -J report (each end's user + system time over the bytes received), iperf3's from -J's
# cpu_utilization_percent (host_total, remote_total) times the test's seconds over its bytes.
# The -Z rows send with each tool's zero-copy (sendfile from memory; iperf3 -Z the same way).
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

# run_tool TOOL ADDR P ZEROCOPY [NETNS] -> "bits_per_second client_cpu_s_per_gb server_cpu_s_per_gb"
# (ZEROCOPY: -Z or "")
run_tool() {
  local tool=$1 addr=$2 p=$3 z=$4 pre=() out=$work/client.json
  if [ $# -ge 5 ]; then pre=(ip netns exec "$5"); fi
  if [ "$tool" = xferbench ]; then
    if ! timeout $((secs + 60)) "${pre[@]}" "$xferbench" net "$addr:$xport" -P "$p" -t "$secs" ${z:+"$z"} --token "$token" -J \
        >"$out" 2>"$work/client.err"; then
      echo "compare-net: xferbench net $addr:$xport -P $p $z failed:" >&2; cat "$work/client.err" >&2; exit 1
    fi
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
received = r["directions"][0]["receiver"]
gb = received["bytes"] / 1e9
cpu = lambda end: (r["cpu"][end]["user_secs"] + r["cpu"][end]["system_secs"]) / gb
print(received["bytes_per_sec"] * 8, cpu("local"), cpu("remote"))' "$out"
  else
    if ! timeout $((secs + 60)) "${pre[@]}" iperf3 -c "$addr" -p "$iport" -P "$p" -t "$secs" ${z:+"$z"} -J \
        >"$out" 2>"$work/client.err"; then
      echo "compare-net: iperf3 -c $addr -p $iport -P $p $z failed:" >&2; cat "$work/client.err" "$out" >&2; exit 1
    fi
    python3 -c '
import json, sys
end = json.load(open(sys.argv[1]))["end"]
received = end["sum_received"]
gb = received["bytes"] / 1e9
cpu = lambda pct: pct / 100 * received["seconds"] / gb
print(received["bits_per_second"], cpu(end["cpu_utilization_percent"]["host_total"]),
      cpu(end["cpu_utilization_percent"]["remote_total"]))' "$out"
  fi
}

# scenarios: "label|addr|client netns"; the label ends in -P N, or -P N -Z
scenarios=("loopback -P 1|127.0.0.1|" "loopback -P 4|127.0.0.1|" "loopback -P 1 -Z|127.0.0.1|")
start_servers loopback 127.0.0.1
if [ "$(id -u)" -eq 0 ]; then
  # shellcheck disable=SC2086 # LAB_ARGS is a list of options
  lab_up $lab_args
  start_servers lab "$lab_addr" "$ns_b"
  scenarios+=("lab -P 1|$lab_addr|$ns_a" "lab -P 4|$lab_addr|$ns_a" "lab -P 1 -Z|$lab_addr|$ns_a")
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
    z=
    case $label in *-Z) z=-Z ;; esac
    p=${label#*-P }; p=${p%% *}
    args=("$addr" "$p" "$z")
    if [ -n "$ns" ]; then args+=("$ns"); fi
    if [ $((round % 2)) -eq 1 ]; then
      x=$(run_tool xferbench "${args[@]}"); i=$(run_tool iperf3 "${args[@]}")
    else
      i=$(run_tool iperf3 "${args[@]}"); x=$(run_tool xferbench "${args[@]}")
    fi
    echo "$label|$i|$x" >>"$results"
    printf 'round %d  %-18s iperf3 %6s  xferbench %6s Gb/s\n' "$round" "$label" "$(giga "${i%% *}")" "$(giga "${x%% *}")"
  done
done

python3 - "$results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, i, x = line.rstrip("\n").split("|")
    rows.setdefault(label, []).append((list(map(float, i.split())), list(map(float, x.split()))))
print()
print(f"{'':18} {'Gb/s':>25} {'CPU s/GB, iperf3':>18} {'CPU s/GB, xferbench':>21}")
print(f"{'scenario':<18} {'iperf3':>8} {'xferbench':>9} {'ratio':>6} {'client':>9} {'server':>8} {'client':>10} {'server':>10}")
for label, runs in rows.items():
    med = lambda tool, k: statistics.median(r[tool][k] for r in runs)
    i, x = med(0, 0), med(1, 0)
    ratio = x / i if i else float("nan")
    print(f"{label:<18} {i/1e9:>8.2f} {x/1e9:>9.2f} {ratio:>6.3f} {med(0, 1):>9.3f} {med(0, 2):>8.3f} "
          f"{med(1, 1):>10.3f} {med(1, 2):>10.3f}")
print("medians; ratio = xferbench / iperf3; CPU: each end's user + system seconds per GB received")
EOF
