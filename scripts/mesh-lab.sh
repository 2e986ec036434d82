#!/usr/bin/env bash
# Many hosts on one machine, for `xferbench mesh`: N network namespaces (PREFIX-h1 ... PREFIX-hN,
# addresses SUBNET.1 ... SUBNET.N/24) on one Linux bridge in a namespace of its own (PREFIX-br,
# which has SUBNET.254 on the bridge: a coordinator runs there). Each host's link may be shaped
# with tc tbf, both ways: on its own end (what it sends) and on the bridge's end (what it receives).
# Traffic never leaves the machine.
#
# usage: scripts/mesh-lab.sh up --hosts N [--rate RATE] [--shape K=RATE]...
#        scripts/mesh-lab.sh down
#
#   --hosts N       2 to 20 hosts
#   --rate RATE     every host's link shaped to RATE (e.g. 1gbit); default unshaped
#   --shape K=RATE  host K's link shaped to RATE instead (e.g. 3=200mbit); may be repeated
#
# Must run as root. Environment: LAB_PREFIX (default xfm, at most 9 characters) names the
# namespaces and interfaces, LAB_SUBNET (default 10.78.0) is the /24; tests set both to get a lab
# of their own. `up` on a lab that is up tears it down first.
set -euo pipefail

prefix=${LAB_PREFIX:-xfm}
subnet=${LAB_SUBNET:-10.78.0}

die() { echo "mesh-lab: $*" >&2; exit 1; }
usage() { echo "usage: scripts/mesh-lab.sh up --hosts N [--rate RATE] [--shape K=RATE]... | down" >&2; exit 2; }

# Interface names are at most 15 bytes: PREFIX + h/p + two digits leaves 9 for the prefix (and
# room to spare).
[[ $prefix =~ ^[A-Za-z0-9_]([A-Za-z0-9_-]{0,8})$ ]] ||
  die "LAB_PREFIX must be 1-9 letters, digits, _ or - (got '$prefix')"
[[ $subnet =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] &&
  [ "${BASH_REMATCH[1]}" -le 255 ] && [ "${BASH_REMATCH[2]}" -le 255 ] && [ "${BASH_REMATCH[3]}" -le 255 ] ||
  die "LAB_SUBNET must be the first three octets of a /24, e.g. 10.78.0 (got '$subnet')"

br_ns=$prefix-br

need_root() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (it creates network namespaces)"
  command -v ip >/dev/null || die "ip (iproute2) is not installed (Debian: apt-get install iproute2)"
  command -v tc >/dev/null || die "tc (iproute2) is not installed (Debian: apt-get install iproute2)"
}

ns_exists() { ip netns list | awk '{print $1}' | grep -qx -- "$1"; }

teardown() {
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^${prefix}-(h[0-9]+|br)$" || true); do
    ip netns del "$ns"
  done
  # A half-made lab can leave a veth end in the root namespace.
  for ifc in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^${prefix}[hp][0-9]+$" || true); do
    ip link del dev "$ifc" 2>/dev/null || true
  done
}

# tbf on DEV in namespace NS at RATE; the burst as scripts/lab.sh picks it (32kb to 1gbit: wire-size
# packets, so 1gbit measures like a real 1 GbE link).
shape() {
  local ns=$1 dev=$2 rate=$3 burst=32kb
  if [[ ${rate,,} =~ ^([0-9.]+)gbit$ ]] && awk -v g="${BASH_REMATCH[1]}" 'BEGIN { exit !(g > 1) }'; then
    burst=4mb
  fi
  ip netns exec "$ns" tc qdisc replace dev "$dev" root tbf rate "$rate" burst "$burst" latency 10ms overhead 24
}

cmd_up() {
  local hosts= rate= k
  declare -A rates=()
  while [ $# -gt 0 ]; do
    case $1 in
      --hosts) [ $# -ge 2 ] || usage; hosts=$2; shift 2 ;;
      --rate) [ $# -ge 2 ] || usage; rate=$2; shift 2 ;;
      --shape)
        [ $# -ge 2 ] || usage
        [[ $2 =~ ^([0-9]+)=([0-9.]+[kmg]?bit)$ ]] || die "--shape takes K=RATE, e.g. 3=200mbit (got '$2')"
        rates[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
        shift 2 ;;
      -h|--help) usage ;;
      *) echo "mesh-lab: unknown option '$1'" >&2; usage ;;
    esac
  done
  [[ $hosts =~ ^[0-9]+$ ]] && [ "$hosts" -ge 2 ] && [ "$hosts" -le 20 ] || die "--hosts must be 2 to 20 (got '$hosts')"
  if [ -n "$rate" ]; then
    [[ $rate =~ ^[0-9.]+[kmg]?bit$ ]] || die "--rate must look like 1gbit or 200mbit (got '$rate')"
  fi
  for k in "${!rates[@]}"; do
    [ "$k" -ge 1 ] && [ "$k" -le "$hosts" ] || die "--shape names host $k; the hosts are 1 to $hosts"
  done

  teardown
  made=0
  trap '[ "$made" = 1 ] || teardown' EXIT

  ip netns add "$br_ns"
  ip -n "$br_ns" link set dev lo up
  ip -n "$br_ns" link add name br0 type bridge
  ip -n "$br_ns" addr add "$subnet.254/24" dev br0
  ip -n "$br_ns" link set dev br0 up
  for k in $(seq 1 "$hosts"); do
    local ns=$prefix-h$k host_if=${prefix}h$k port_if=${prefix}p$k
    ip netns add "$ns"
    ip link add name "$host_if" netns "$ns" type veth peer name "$port_if" netns "$br_ns"
    ip -n "$ns" link set dev lo up
    ip -n "$ns" addr add "$subnet.$k/24" dev "$host_if"
    ip -n "$ns" link set dev "$host_if" up
    ip -n "$br_ns" link set dev "$port_if" master br0
    ip -n "$br_ns" link set dev "$port_if" up
    local link_rate=${rates[$k]:-$rate}
    if [ -n "$link_rate" ]; then
      shape "$ns" "$host_if" "$link_rate"
      shape "$br_ns" "$port_if" "$link_rate"
    fi
    echo "  $ns  $subnet.$k  ${link_rate:-unshaped}"
  done
  # Every host answers before we say so (bounded: one ping each, 2 s at most).
  if command -v ping >/dev/null; then
    for k in $(seq 1 "$hosts"); do
      ip netns exec "$br_ns" ping -c 1 -W 2 "$subnet.$k" >/dev/null 2>&1 ||
        echo "mesh-lab: warning: $subnet.$k does not answer yet" >&2
    done
  fi
  made=1
  echo "mesh lab up: $hosts hosts on a bridge in $br_ns ($subnet.254)"
  echo "  try: ip netns exec $prefix-h1 xferbench serve --listen $subnet.1:5301 --token T   (and so on)"
  echo "       ip netns exec $br_ns xferbench mesh $subnet.[1-$hosts] --token T"
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
  up) need_root; cmd_up "$@" ;;
  down) [ $# -eq 0 ] || usage; need_root; teardown ;;
  -h|--help|help) usage ;;
  *) echo "mesh-lab: unknown command '$cmd'" >&2; usage ;;
esac
