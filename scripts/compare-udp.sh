#!/usr/bin/env bash
# xferbench net --via udp against nuttcp -u and iperf3 -u (memory to memory, as fast as each
# sender can, 8948-byte datagrams and 4 MB socket buffers, as the seed ran nuttcp), and
# xferbench lat --via tcp/udp against qperf tcp_lat/udp_lat (8-byte messages), on loopback and
# (as root) between the two network namespaces of scripts/lab.sh at MTU 9000.
# Each round runs every scenario once with every tool, rotating which tool goes first, so drift
# hits all alike. Prints each round, then a table of medians and the ratios.
#
# usage: scripts/compare-udp.sh [ROUNDS] [SECS]
#        defaults: 5 rounds, 5 s per throughput run (latency runs take 2 s or 20000 round trips)
# environment: XFERBENCH     the binary to test (default: target/release/xferbench, built here)
#              BASE_PORT     first of the 5 ports the servers use (default 5311)
#              LAB_ARGS      options for `scripts/lab.sh up` (default "--mtu 9000")
#              LAB_PREFIX, LAB_SUBNET        passed on to scripts/lab.sh
# Only loopback and the lab's own addresses are ever used. As root the lab is (re)created at the
# start and taken down at the end.
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh" || exit 1
rounds=${1:-5}
secs=${2:-5}
base=${BASE_PORT:-5311}
xport=$base nctl=$((base + 1)) ndata=$((base + 2)) iport=$((base + 3)) qport=$((base + 4))
lab_args=${LAB_ARGS:---mtu 9000}
len=8948
window=4M
lat_rounds=20000

need_posint ROUNDS "$rounds"
need_posint SECS "$secs"
for tool in nuttcp iperf3 qperf python3; do
  need $tool "nuttcp iperf3 qperf python3"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/xferbench-compare-udp.XXXXXX")
remove_on_exit "$work"

use_xferbench
token=$(new_token)

# start NAME LOG PATTERN [NETNS] -- COMMAND...: starts a server, waits until LOG matches (~10 s);
# with no PATTERN (a server that prints nothing), gives it 0.4 s as long as it stays up.
start() {
  local name=$1 log=$2 pattern=$3 pre=() pid
  shift 3
  if [ "$1" != -- ]; then pre=(ip netns exec "$1"); shift; fi
  shift
  "${pre[@]}" "$@" >"$log" 2>&1 &
  pid=$!
  track_pid "$pid"
  if [ -z "$pattern" ]; then
    for _ in 1 2 3 4; do
      kill -0 "$pid" 2>/dev/null || { echo "compare-udp: $name exited:" >&2; cat "$log" >&2; exit 1; }
      sleep 0.1
    done
    return 0
  fi
  wait_ready "$log" "$pattern" "$pid" "$name" exited "$log"
}

# start_servers NAME ADDR [NETNS]: xferbench serve, nuttcp -S, iperf3 -s and qperf on ADDR.
start_servers() {
  local name=$1 addr=$2 in_ns=(--)
  if [ $# -ge 3 ]; then in_ns=("$3" --); fi
  start "xferbench serve on $addr" "$work/$name.serve" '^listening on' "${in_ns[@]}" \
    "$xferbench" serve --listen "$addr:$xport" --token "$token"
  start "nuttcp -S on $addr" "$work/$name.nuttcp" '' "${in_ns[@]}" \
    nuttcp -S --nofork -P "$nctl"
  start "iperf3 -s on $addr" "$work/$name.iperf3" 'Server listening' "${in_ns[@]}" \
    iperf3 -s -B "$addr" -p "$iport" --forceflush
  start "qperf on $addr" "$work/$name.qperf" '' "${in_ns[@]}" qperf -lp "$qport"
}

# ns_prefix NETNS: sets pre to the words that run a command inside NETNS (none when empty).
ns_prefix() {
  pre=()
  if [ -n "$1" ]; then pre=(ip netns exec "$1"); fi
}

# udp TOOL ADDR NETNS -> "received_bits_per_sec loss_percent"
udp() {
  local tool=$1 addr=$2 ns=$3 out=$work/client.out pre
  ns_prefix "$ns"
  case $tool in
    xferbench)
      timeout $((secs + 60)) "${pre[@]}" "$xferbench" net "$addr:$xport" --via udp --max -l $len -w $window \
        -t "$secs" --token "$token" -J >"$out" 2>"$work/client.err" ||
        { echo "compare-udp: xferbench net --via udp to $addr failed:" >&2; cat "$work/client.err" >&2; exit 1; }
      python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))["directions"][0]
print(d["receiver"]["bytes_per_sec"] * 8, d["datagrams"]["loss_percent"])' "$out" ;;
    nuttcp)
      timeout $((secs + 60)) "${pre[@]}" nuttcp -u -l$len -w$window -Ru -T"$secs" -P "$nctl" -p "$ndata" -fparse \
        "$addr" >"$out" 2>"$work/client.err" ||
        { echo "compare-udp: nuttcp -u to $addr failed:" >&2; cat "$work/client.err" "$out" >&2; exit 1; }
      python3 -c 'import sys
f = dict(kv.split("=", 1) for kv in open(sys.argv[1]).read().split() if "=" in kv)
print(float(f["rate_Mbps"]) * 1e6, float(f["data_loss"]))' "$out" ;;
    iperf3)
      timeout $((secs + 60)) "${pre[@]}" iperf3 -c "$addr" -p "$iport" -u -b 0 -l $len -w $window -t "$secs" -J \
        >"$out" 2>"$work/client.err" ||
        { echo "compare-udp: iperf3 -u to $addr failed:" >&2; cat "$work/client.err" "$out" >&2; exit 1; }
      # iperf3 3.12's UDP sum is the sender's rate; the receiver got (100 - lost)% of it.
      python3 -c 'import json,sys
s = json.load(open(sys.argv[1]))["end"]["sum"]
print(s["bits_per_second"] * (100 - s["lost_percent"]) / 100, s["lost_percent"])' "$out" ;;
  esac
}

# lat TOOL PROTO ADDR NETNS -> mean one-way latency in microseconds
lat() {
  local tool=$1 proto=$2 addr=$3 ns=$4 out=$work/client.out pre
  ns_prefix "$ns"
  if [ "$tool" = xferbench ]; then
    timeout 120 "${pre[@]}" "$xferbench" lat "$addr:$xport" --via "$proto" -s 8 -n $lat_rounds --token "$token" -J \
      >"$out" 2>"$work/client.err" ||
      { echo "compare-udp: xferbench lat --via $proto to $addr failed:" >&2; cat "$work/client.err" >&2; exit 1; }
    python3 -c 'import json,sys; l = json.load(open(sys.argv[1]))["latency"]; print(l["mean_us"], l["median_us"])' "$out"
  else
    timeout 60 "${pre[@]}" qperf -lp "$qport" -m 8 -t 2 -vu "$addr" "${proto}_lat" >"$out" 2>"$work/client.err" ||
      { echo "compare-udp: qperf ${proto}_lat to $addr failed:" >&2; cat "$work/client.err" "$out" >&2; exit 1; }
    python3 -c 'import re,sys
m = re.search(r"latency\s*=\s*([0-9.]+)\s*(ns|us|ms|sec)", open(sys.argv[1]).read())
scale = {"ns": 1e-3, "us": 1, "ms": 1e3, "sec": 1e6}[m.group(2)]
print(float(m.group(1)) * scale, "-")' "$out"
  fi
}

# scenarios: "label|addr|client netns"
scenarios=("loopback|127.0.0.1|")
start_servers loopback 127.0.0.1
if [ "$(id -u)" -eq 0 ]; then
  # shellcheck disable=SC2086 # LAB_ARGS is a list of options
  lab_up $lab_args
  start_servers lab "$lab_addr" "$ns_b"
  scenarios+=("lab ${lab_args}|$lab_addr|$ns_a")
else
  echo "note: not root, so loopback only (the namespace lab needs root: sudo scripts/compare-udp.sh)"
fi

echo "UDP memory to memory: $len-byte datagrams, -w $window, as fast as possible, $secs s per run;"
echo "latency: 8-byte messages, qperf 2 s, xferbench $lat_rounds round trips; $rounds rounds, rotating the first tool"
machine_line
echo "$(nuttcp -V | head -n1)  $(iperf3 --version | head -n1)  qperf $(qperf --version 2>&1 | head -n1)  xferbench $("$xferbench" --version | cut -d' ' -f2)"
results=$work/results
: >"$results"
tools=(xferbench nuttcp iperf3)
for round in $(seq 1 "$rounds"); do
  for sc in "${scenarios[@]}"; do
    IFS='|' read -r label addr ns <<<"$sc"
    declare -A got=()
    for k in 0 1 2; do
      tool=${tools[$(((round + k) % 3))]}
      got[$tool]=$(udp "$tool" "$addr" "$ns")
    done
    echo "udp|$label|${got[xferbench]}|${got[nuttcp]}|${got[iperf3]}" >>"$results"
    python3 - "$round" "$label" "${got[xferbench]}" "${got[nuttcp]}" "${got[iperf3]}" <<'EOF'
import sys
r, label, *runs = sys.argv[1:]
x, n, i = ([float(v) for v in run.split()] for run in runs)
print(f"round {r}  udp {label:<16} xferbench {x[0]/1e9:6.2f} Gb/s ({x[1]:.2f}% lost)  "
      f"nuttcp {n[0]/1e9:6.2f} ({n[1]:.2f}%)  iperf3 {i[0]/1e9:6.2f} ({i[1]:.2f}%)")
EOF
    for proto in tcp udp; do
      if [ $((round % 2)) -eq 1 ]; then
        x=$(lat xferbench $proto "$addr" "$ns"); q=$(lat qperf $proto "$addr" "$ns")
      else
        q=$(lat qperf $proto "$addr" "$ns"); x=$(lat xferbench $proto "$addr" "$ns")
      fi
      echo "lat|$label|$proto|$x|$q" >>"$results"
      read -r xmean xmedian <<<"$x"
      printf 'round %d  %s_lat %-16s xferbench mean %.2f µs, median %.2f µs  qperf %s µs\n' "$round" "$proto" \
        "$label" "$xmean" "$xmedian" "${q% -}"
    done
  done
done

python3 - "$results" <<'EOF'
import statistics, sys
udp, lat = {}, {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("|")
    if f[0] == "udp":
        udp.setdefault(f[1], []).append([[float(v) for v in run.split()] for run in f[2:]])
    else:
        x, q = f[3].split(), f[4].split()
        lat.setdefault((f[1], f[2]), []).append((float(x[0]), float(x[1]), float(q[0])))
med = statistics.median
print()
print(f"{'UDP, received':<22} {'xferbench Gb/s':>15} {'nuttcp Gb/s':>12} {'iperf3 Gb/s':>12} {'x/nuttcp':>9} {'x/iperf3':>9}   loss x / nuttcp / iperf3")
for label, runs in udp.items():
    x, n, i = (med(r[k][0] for r in runs) for k in range(3))
    lx, ln, li = (med(r[k][1] for r in runs) for k in range(3))
    print(f"{label:<22} {x/1e9:>15.2f} {n/1e9:>12.2f} {i/1e9:>12.2f} {x/n:>9.3f} {x/i:>9.3f}   "
          f"{lx:.2f}% / {ln:.2f}% / {li:.2f}%")
print()
print(f"{'latency, one way':<22} {'xferbench mean µs':>18} {'median µs':>10} {'qperf µs':>9} {'mean/qperf':>11}")
for (label, proto), runs in lat.items():
    xm, xmed, q = (med(r[k] for r in runs) for k in range(3))
    print(f"{proto + '_lat ' + label:<22} {xm:>18.2f} {xmed:>10.2f} {q:>9.2f} {xm/q:>11.3f}")
print("medians of the rounds; UDP rates are what the receiver got; qperf reports the mean")
EOF
