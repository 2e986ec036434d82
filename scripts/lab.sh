#!/usr/bin/env bash
# Two hosts on one machine: network namespaces xfb-a and xfb-b joined by a veth pair
# (xfb-a0 10.77.0.1/24 <-> xfb-b0 10.77.0.2/24), optionally shaped with tc to emulate a link.
# Traffic between them never leaves the machine.
#
# usage: scripts/lab.sh up [--rate RATE [--burst SIZE --peakrate RATE]] [--mtu MTU] [--delay DELAY]
#        scripts/lab.sh down
#        scripts/lab.sh status          (exit 0 when the lab is up, 1 when it is down)
#
#   --rate RATE   shape both directions with tbf, e.g. 1gbit, 2500mbit, 10gbit (default: unshaped)
#   --burst SIZE  tbf's bucket instead of the one chosen for RATE, e.g. 100mb: that many bytes
#                 pass faster than RATE before it holds (a burst that runs out, as a cache fills)
#   --peakrate R  with --burst: the rate the burst drains at (tbf peakrate, mtu 64kb), e.g. 400mbit
#   --mtu MTU     MTU of both veth ends, e.g. 9000 for jumbo frames (default 1500)
#   --delay DELAY one-way delay on both ends with netem, e.g. 1ms (needs sch_netem in the kernel)
#
# `up` on a lab that is already up tears it down first; `down` on a lab that is down does nothing.
# Must run as root. Environment: LAB_PREFIX (default xfb) prefixes the namespace and interface
# names, LAB_SUBNET (default 10.77.0) is the /24 the two ends live in; tests set both to get a
# lab of their own.
set -euo pipefail

prefix=${LAB_PREFIX:-xfb}
subnet=${LAB_SUBNET:-10.77.0}

die() { echo "lab: $*" >&2; exit 1; }
usage() { echo "usage: scripts/lab.sh up [--rate RATE [--burst SIZE --peakrate RATE]] [--mtu MTU] [--delay DELAY] | down | status" >&2; exit 2; }

# Interface names are at most 15 bytes: PREFIX-a0 leaves 12 for the prefix.
[[ $prefix =~ ^[A-Za-z0-9_]([A-Za-z0-9_-]{0,11})$ ]] ||
  die "LAB_PREFIX must be 1-12 letters, digits, _ or - (got '$prefix')"
[[ $subnet =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] &&
  [ "${BASH_REMATCH[1]}" -le 255 ] && [ "${BASH_REMATCH[2]}" -le 255 ] && [ "${BASH_REMATCH[3]}" -le 255 ] ||
  die "LAB_SUBNET must be the first three octets of a /24, e.g. 10.77.0 (got '$subnet')"

ns_a=$prefix-a
ns_b=$prefix-b
if_a=$prefix-a0
if_b=$prefix-b0
addr_a=$subnet.1
addr_b=$subnet.2

need_root() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (it creates network namespaces): sudo scripts/lab.sh $*"
  command -v ip >/dev/null || die "ip (iproute2) is not installed (Debian: apt-get install iproute2)"
  command -v tc >/dev/null || die "tc (iproute2) is not installed (Debian: apt-get install iproute2)"
}

ns_exists() { ip netns list | awk '{print $1}' | grep -qx -- "$1"; }

is_up() { ns_exists "$ns_a" || ns_exists "$ns_b"; }

teardown() {
  local ns pids
  for ns in "$ns_a" "$ns_b"; do
    if ns_exists "$ns"; then
      pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
      if [ -n "$pids" ]; then
        echo "lab: note: processes still run in $ns (pids ${pids% }); the namespace lives on until they exit" >&2
      fi
      ip netns del "$ns"
    fi
  done
  # A half-made lab can leave a veth end in the root namespace.
  for ifc in "$if_a" "$if_b"; do
    if ip link show dev "$ifc" >/dev/null 2>&1; then ip link del dev "$ifc"; fi
  done
}

# Rate in tc syntax -> bytes per second (tc: kbit = 1000 bit, kibit = 1024 bit, bps = bytes/s).
rate_bytes() {
  local r=${1,,} num unit mult
  [[ $r =~ ^([0-9]+(\.[0-9]+)?)([kmgt]?i?)(bit|bps)$ ]] || return 1
  num=${BASH_REMATCH[1]}
  case ${BASH_REMATCH[3]} in
    '') mult=1 ;; k) mult=1e3 ;; m) mult=1e6 ;; g) mult=1e9 ;; t) mult=1e12 ;;
    ki) mult=1024 ;; mi) mult=1048576 ;; gi) mult=1073741824 ;; ti) mult=1099511627776 ;;
    *) return 1 ;;
  esac
  if [ "${BASH_REMATCH[4]}" = bit ]; then
    awk -v n="$num" -v m="$mult" 'BEGIN { printf "%.0f\n", n * m / 8 }'
  else
    awk -v n="$num" -v m="$mult" 'BEGIN { printf "%.0f\n", n * m }'
  fi
}

# tbf burst for a rate: 32kb up to 1gbit (a burst under 64 KB makes tbf split veth's 64 KB
# GSO bundles into wire-size packets, so the shaping looks like a real 1 GbE link: ~940 Mbit/s);
# above that, rate/250 rounded down to a power of two in KiB (10gbit -> 4mb, measured 9.57 Gbit/s).
burst_for() {
  awk -v b="$1" 'BEGIN {
    if (b <= 125000000) { print "32kb"; exit }
    k = b / 250 / 1024; p = 32
    while (p * 2 <= k) p *= 2
    if (p % 1024 == 0) printf "%dmb\n", p / 1024; else printf "%dkb\n", p
  }'
}

human_rate() { awk -v b="$1" 'BEGIN { printf "%.3g Gbit/s (%.0f MB/s)", b * 8 / 1e9, b / 1e6 }'; }

cmd_up() {
  local rate= mtu=1500 delay= rbytes= burst= given_burst= peakrate= peak=
  while [ $# -gt 0 ]; do
    case $1 in
      --burst) [ $# -ge 2 ] || usage; given_burst=$2; shift 2 ;;
      --peakrate) [ $# -ge 2 ] || usage; peakrate=$2; shift 2 ;;
      --rate) [ $# -ge 2 ] || usage; rate=$2; shift 2 ;;
      --rate=*) rate=${1#*=}; shift ;;
      --mtu) [ $# -ge 2 ] || usage; mtu=$2; shift 2 ;;
      --mtu=*) mtu=${1#*=}; shift ;;
      --delay) [ $# -ge 2 ] || usage; delay=$2; shift 2 ;;
      --delay=*) delay=${1#*=}; shift ;;
      -h|--help) usage ;;
      *) echo "lab: unknown option '$1'" >&2; usage ;;
    esac
  done
  [[ $mtu =~ ^[0-9]+$ ]] && [ "$mtu" -ge 68 ] && [ "$mtu" -le 65535 ] || die "--mtu must be 68..65535 (got '$mtu')"
  if [ -n "$rate" ]; then
    rbytes=$(rate_bytes "$rate") || die "--rate must look like 1gbit, 2500mbit, 10gbit or 100mbps (got '$rate')"
    [ "$rbytes" -gt 0 ] || die "--rate must be above zero (got '$rate')"
    burst=$(burst_for "$rbytes")
  fi
  if [ -n "$given_burst" ] || [ -n "$peakrate" ]; then
    [ -n "$rate" ] && [ -n "$given_burst" ] && [ -n "$peakrate" ] || die "--burst and --peakrate go together, with --rate"
    [[ $given_burst =~ ^[0-9]+(kb|mb)$ ]] || die "--burst must look like 512kb or 100mb (got '$given_burst')"
    rate_bytes "$peakrate" >/dev/null || die "--peakrate must look like 400mbit (got '$peakrate')"
    burst=$given_burst
    peak="peakrate $peakrate mtu 64kb"
  fi
  if [ -n "$delay" ]; then
    [[ ${delay,,} =~ ^[0-9]+(\.[0-9]+)?(s|ms|us)$ ]] || die "--delay must look like 1ms, 500us or 0.1s (got '$delay')"
  fi

  teardown
  # Any failure from here on leaves nothing half-made behind.
  made=0
  trap '[ "$made" = 1 ] || teardown' EXIT

  ip netns add "$ns_a"
  ip netns add "$ns_b"
  ip link add name "$if_a" netns "$ns_a" type veth peer name "$if_b" netns "$ns_b"
  ip -n "$ns_a" addr add "$addr_a/24" dev "$if_a"
  ip -n "$ns_b" addr add "$addr_b/24" dev "$if_b"
  local pair
  for pair in "$ns_a $if_a" "$ns_b $if_b"; do
    set -- $pair
    ip -n "$1" link set dev lo up
    ip -n "$1" link set dev "$2" mtu "$mtu"
    ip -n "$1" link set dev "$2" up
  done

  # Shaping goes on both ends, so both directions see the same link.
  # With --delay: netem at the root, tbf under it (the layout netem's manual gives).
  for pair in "$ns_a $if_a" "$ns_b $if_b"; do
    set -- $pair
    if [ -n "$delay" ]; then
      if ! ip netns exec "$1" tc qdisc replace dev "$2" root handle 1: netem delay "$delay" limit 100000 2>/dev/null; then
        teardown
        die "this kernel has no sch_netem (netem qdisc), so --delay is unavailable; try without --delay"
      fi
      if [ -n "$rate" ]; then
        ip netns exec "$1" tc qdisc replace dev "$2" parent 1:1 handle 10: \
          tbf rate "$rate" burst "$burst" $peak latency 10ms overhead 24
      fi
    elif [ -n "$rate" ]; then
      ip netns exec "$1" tc qdisc replace dev "$2" root tbf rate "$rate" burst "$burst" $peak latency 10ms overhead 24
    fi
  done

  # The link should work before we say so (bounded: at most 3 pings, 1 s timeout each).
  if command -v ping >/dev/null; then
    ip netns exec "$ns_a" ping -c 1 -W 1 "$addr_b" >/dev/null 2>&1 ||
      ip netns exec "$ns_a" ping -c 2 -W 1 "$addr_b" >/dev/null 2>&1 ||
      echo "lab: warning: $ns_a cannot ping $addr_b yet" >&2
  fi
  made=1

  echo "lab up: $ns_a ($if_a $addr_a/24) <-> $ns_b ($if_b $addr_b/24)"
  echo "  mtu     $mtu"
  if [ -n "$rate" ]; then
    echo "  shaping tbf rate $rate burst $burst${peak:+ $peak} latency 10ms overhead 24, both directions ($(human_rate "$rbytes") on the wire)"
  else
    echo "  shaping none (veth at full speed)"
  fi
  if [ -n "$delay" ]; then echo "  delay   netem $delay each way (RTT +2x)"; fi
  echo "  try:    ip netns exec $ns_b xferbench serve --listen $addr_b:5301 --token T"
  echo "          ip netns exec $ns_a xferbench net $addr_b --token T -P 4"
  echo "  stop:   scripts/lab.sh down"
}

cmd_status() {
  if ! is_up; then
    echo "lab down: no namespace $ns_a or $ns_b"
    return 1
  fi
  local pair ns ifc
  for pair in "$ns_a $if_a" "$ns_b $if_b"; do
    set -- $pair
    ns=$1 ifc=$2
    if ! ns_exists "$ns"; then echo "$ns: missing (half-made lab: run scripts/lab.sh up or down)"; continue; fi
    if ! ip -n "$ns" link show dev "$ifc" >/dev/null 2>&1; then echo "$ns: no interface $ifc"; continue; fi
    local addr mtu state qdisc pids
    addr=$(ip -n "$ns" -o -4 addr show dev "$ifc" | awk '{print $4}' | paste -sd' ')
    mtu=$(ip -n "$ns" -o link show dev "$ifc" | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
    state=$(ip -n "$ns" -o link show dev "$ifc" | sed -n 's/.* state \([A-Z]*\).*/\1/p')
    qdisc=$(ip netns exec "$ns" tc qdisc show dev "$ifc" | paste -sd';' | sed 's/;/; /g')
    pids=$(ip netns pids "$ns" 2>/dev/null | wc -l)
    echo "$ns: $ifc ${addr:-no address} mtu $mtu $state, $pids processes"
    echo "  qdisc: $qdisc"
  done
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
  up) need_root up; cmd_up "$@" ;;
  down) [ $# -eq 0 ] || usage; need_root down; teardown ;;
  status) [ $# -eq 0 ] || usage; need_root status; cmd_status ;;
  -h|--help|help) usage ;;
  *) echo "lab: unknown command '$cmd'" >&2; usage ;;
esac
