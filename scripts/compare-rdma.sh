#!/usr/bin/env bash
# xferbench --via rdma against perftest, on soft-RoCE (rxe0) in the QEMU VM of scripts/lab-vm.sh,
# so no RDMA hardware is needed: memory to memory `xferbench net` against ib_write_bw (RC RDMA
# WRITE, 1 MiB messages, the same number of WRITEs in flight, the same duration), the write
# latency of that same `xferbench net` run against ib_write_lat (8 bytes, 1000 samples), and a
# file copy `xferbench copy --via rdma` against ib_write_bw's median.
# Everything runs in ONE boot of the VM, server and client in the same guest on 127.0.0.1, both
# tools on the same device and GID (the RoCE v2 GID with the guest's IPv4 address). Each round
# runs both tools, alternating which goes first, so drift hits both alike. Prints each round,
# then the medians and the ratios xferbench / perftest.
#
# The file: SIZE of random bytes, copied from a tmpfs in the VM to another tmpfs in the VM
# (serve's --root) by default, so the figure is the RDMA file path (disk engine, registered
# slots, credits), not a disk. SRC_DIR / DEST_DIR put either side in a host directory instead
# (shared into the VM over 9p, e.g. /var/tmp for this machine's disk). Every copy is compared
# with the source (cmp).
# The figures are those of an emulated CPU (QEMU TCG) running soft-RoCE: only the ratios mean
# something. perftest prints MB/sec as 2^20 B/s; it is converted here: 1 MB/s = 10^6 B/s.
# ib_write_bw -D SECS counts the middle SECS - 2*floor(SECS/4) s of its run; xferbench net -t SECS
# counts exactly SECS (the WRITEs still in flight at the end are drained, not counted).
#
# usage: scripts/compare-rdma.sh [SIZE] [ROUNDS]
#        defaults: 512M, 3 rounds
# environment: XFERBENCH   the binary to test (default: target/release/xferbench, built here
#                          with --features rdma)
#              SECS        seconds per bandwidth run, both tools (default 8; at least 4, below
#                          which ib_write_bw has no margins and counts its own start)
#              QDEPTH      RDMA WRITEs in flight: ib_write_bw -t, xferbench -Q (default 128)
#              MTU         MTU of the VM's dummy0, lab-vm.sh --mtu (default 1500: RDMA MTU 1024)
#              SRC_DIR, DEST_DIR   host directories for the file and its copy (default: a tmpfs
#                          in the VM each)
#              XFERBENCH_PORT      serve's port in the VM (default 5301)
#              RDMA_VM_MEM, RDMA_VM_TIMEOUT and the rest: see scripts/lab-vm.sh (defaults here:
#                          enough memory for the file and its copy, 1500 s or more)
# Only 127.0.0.1 (in the VM) is ever used.
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh" || exit 1
size=${1:-512M}
rounds=${2:-3}
secs=${SECS:-8}
qdepth=${QDEPTH:-128}
mtu=${MTU:-1500}
xport=${XFERBENCH_PORT:-5301}

need_posint ROUNDS "$rounds"
if ! { [[ $secs =~ ^[0-9]+$ ]] && [ "$secs" -ge 4 ]; }; then usage_error "SECS must be an integer >= 4 (got '$secs')"; fi
need_posint QDEPTH "$qdepth"
[[ $mtu =~ ^[0-9]+$ ]] || usage_error "MTU must be a number (got '$mtu')"
[[ $xport =~ ^[0-9]+$ ]] || usage_error "XFERBENCH_PORT must be a number (got '$xport')"
need_python3
# SIZE in bytes, read the way xferbench reads it (K/M/G/T: powers of 1024, KB/MB/GB/TB: of 1000).
# shellcheck disable=SC2015 # the last part exits
bytes=$(python3 - "$size" <<'EOF'
import re, sys
m = re.fullmatch(r"([0-9.]+)\s*(?:([kmgtp])(i?b?|b)?|b)?", sys.argv[1].strip(), re.I)
if not m:
    sys.exit(1)
power = "kmgtp".index(m.group(2).lower()) + 1 if m.group(2) else 0
base = 1000 if (m.group(3) or "").lower() == "b" else 1024
print(round(float(m.group(1)) * base ** power))
EOF
) && [ "$bytes" -gt 0 ] || usage_error "SIZE must be a size such as 512M or 2G (got '$size')"

use_xferbench --features rdma
[ -f "$xferbench" ] || die "$xferbench is not an executable"
# The guest sees this machine's / at the same paths: an absolute path reaches the same binary.
xferbench=$(cd "$(dirname "$xferbench")" && pwd -P)/$(basename "$xferbench")
# A build without the feature says so at once (here, where there is no RDMA device to reach).
case $("$xferbench" -q net 127.0.0.1:9 --via rdma -t 1 2>&1 || true) in
  *"has no RDMA support"*) die "$xferbench was built without RDMA: cargo build --release --features rdma" ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/xferbench-compare-rdma.XXXXXX")
remove_on_exit "$work"
src_host='' dest_host=''

# Where the file and its copy live. A host directory goes into the VM with --share; otherwise
# the guest mounts a tmpfs of its own (sized for the file) for each side.
shares=(--share "$work")
if [ -n "${SRC_DIR:-}" ]; then
  src_host=$(mktemp -d "$SRC_DIR/xferbench-compare-rdma-src.XXXXXX") || die "cannot make a directory in SRC_DIR=$SRC_DIR"
  remove_on_exit "$src_host"
  shares+=(--share "$src_host")
fi
if [ -n "${DEST_DIR:-}" ]; then
  dest_host=$(mktemp -d "$DEST_DIR/xferbench-compare-rdma-dest.XXXXXX") || die "cannot make a directory in DEST_DIR=$DEST_DIR"
  remove_on_exit "$dest_host"
  shares+=(--share "$dest_host")
fi
# Guest memory: the tmpfs sides plus 1 GiB for everything else, 2 GiB at least.
mib=$(( (bytes + (1 << 20) - 1) >> 20 ))
tmpfs_sides=0
[ -n "$src_host" ] || tmpfs_sides=$((tmpfs_sides + 1))
[ -n "$dest_host" ] || tmpfs_sides=$((tmpfs_sides + 1))
export RDMA_VM_MEM=${RDMA_VM_MEM:-$(( tmpfs_sides * mib + 1024 > 2048 ? tmpfs_sides * mib + 1024 : 2048 ))M}
# The whole VM: generous, the emulated CPU is slow and may share this machine with other work.
estimate=$(( 300 + rounds * (4 * secs + 120 + mib / 5) ))
export RDMA_VM_TIMEOUT=${RDMA_VM_TIMEOUT:-$(( estimate > 1500 ? estimate : 1500 ))}

# The guest's half: runs as root in the VM, writes one line per measurement to $RESULTS.
cat >"$work/inner.sh" <<'EOF'
#!/bin/bash
# compare-rdma.sh's guest side (generated; runs in scripts/lab-vm.sh's VM).
set -euo pipefail
shopt -s inherit_errexit
die() { echo "compare-rdma (in the VM): $*" >&2; exit 1; }
dev=${RDMA_VM_DEV:-rxe0}
msg=1048576
pport=18515
tmp=$(mktemp -d /tmp/compare-rdma.XXXXXX)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# The file's side and the copy's: a host directory (9p) or a tmpfs of this guest.
side() {
  if [ -n "$1" ]; then echo "$1"; return; fi
  mkdir -p "/mnt/compare-rdma-$2"
  mount -t tmpfs -o "size=$((BYTES + (64 << 20)))" tmpfs "/mnt/compare-rdma-$2" || die "cannot mount a tmpfs for the $2"
  echo "/mnt/compare-rdma-$2"
}
where() { if [ -n "$1" ]; then echo "host $1 (9p)"; else echo "tmpfs in the VM"; fi; }
src_dir=$(side "$SRC_HOST" src)
dest_dir=$(side "$DEST_HOST" dest)
src=$src_dir/random.img

# The RoCE v2 GID with an IPv4 address (the lowest such index), for both tools.
gid=
gids=/sys/class/infiniband/$dev/ports/1
for i in $(ls "$gids/gid_attrs/types" | sort -n); do
  [ "$(cat "$gids/gid_attrs/types/$i" 2>/dev/null)" = "RoCE v2" ] || continue
  case $(cat "$gids/gids/$i") in 0000:0000:0000:0000:0000:ffff:*) gid=$i; break ;; esac
done
[ -n "$gid" ] || die "$dev has no RoCE v2 GID with an IPv4 address"
rdma=(--via rdma --ib-dev "$dev" --gid-index "$gid")

# perftest TOOL ARG...: TOOL's server, then its client to 127.0.0.1; the client's output in
# $tmp/client.out.
perftest() {
  local tool=$1 spid n
  shift
  timeout 300 "$tool" "$@" -p "$pport" >"$tmp/server.out" 2>&1 &
  spid=$!
  pids+=("$spid")
  for n in $(seq 1 300); do
    [ -z "$(ss -Hltn "sport = :$pport")" ] || break
    kill -0 "$spid" 2>/dev/null || { cat "$tmp/server.out" >&2; die "$tool's server exited before listening"; }
    sleep 0.1
  done
  [ -n "$(ss -Hltn "sport = :$pport")" ] || { cat "$tmp/server.out" >&2; die "$tool's server was not listening after 30 s"; }
  if ! timeout 300 "$tool" "$@" -p "$pport" 127.0.0.1 >"$tmp/client.out" 2>&1; then
    cat "$tmp/client.out" >&2
    die "$tool $* 127.0.0.1 failed"
  fi
  wait "$spid" || { cat "$tmp/server.out" >&2; die "$tool's server failed"; }
}

# ib_bw -> bytes/s (decimal) of one ib_write_bw run.
ib_bw() {
  perftest ib_write_bw -d "$dev" -x "$gid" -F -s "$msg" -t "$QDEPTH" -D "$SECS"
  grep -q 'BW average\[MB/sec\]' "$tmp/client.out" || { cat "$tmp/client.out" >&2; die "ib_write_bw printed no 'BW average[MB/sec]' column"; }
  # perftest's MB/sec is 2^20 bytes/s.
  awk '/BW average\[MB\/sec\]/ { getline; printf "%.0f\n", $4 * 1048576; exit }' "$tmp/client.out"
}

# ib_lat -> "typical p99" in µs (one way, half the round trip) of one ib_write_lat run.
ib_lat() {
  perftest ib_write_lat -d "$dev" -x "$gid" -F -s 8 -n 1000
  grep -q 't_typical\[usec\].*99% percentile\[usec\]' "$tmp/client.out" ||
    { cat "$tmp/client.out" >&2; die "ib_write_lat printed no t_typical / 99% percentile columns"; }
  awk '/t_typical\[usec\]/ { getline; print $5, $8; exit }' "$tmp/client.out"
}

# x_net -> "bytes/s median_us p99_us" of one xferbench net run (bandwidth and latency).
x_net() {
  if ! timeout $((SECS + 180)) "$XFERBENCH" -q net "127.0.0.1:$XPORT" "${rdma[@]}" -t "$SECS" -s 1M -Q "$QDEPTH" -J \
      >"$tmp/net.json" 2>"$tmp/net.err"; then
    cat "$tmp/net.err" >&2
    die "xferbench net failed or hung"
  fi
  python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
lat = d.get("latency") or {}
print(d["directions"][0]["receiver"]["bytes_per_sec"], lat.get("median_us", "nan"), lat.get("p99_us", "nan"))' "$tmp/net.json"
}

# x_copy -> bytes/s of one xferbench copy of the file into serve's root, checked with cmp.
x_copy() {
  rm -f "$dest_dir/copy.img"
  if ! timeout $((BYTES / 1000000 + 300)) "$XFERBENCH" -q copy "$src" "127.0.0.1:$XPORT:copy.img" "${rdma[@]}" \
      -J -f --bs 1M --iodepth 16 >"$tmp/copy.json" 2>"$tmp/copy.err"; then
    cat "$tmp/copy.err" >&2
    die "xferbench copy failed or hung"
  fi
  cmp -s "$src" "$dest_dir/copy.img" || die "xferbench's copy differs from the source"
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["measurement"]["bytes_per_sec"])' "$tmp/copy.json"
}

mbs() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }

"$XFERBENCH" serve --listen "127.0.0.1:$XPORT" --root "$dest_dir" --ib-dev "$dev" --gid-index "$gid" \
  >"$tmp/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q '^listening on' "$tmp/serve.log" && break; sleep 0.1; done
grep -q '^listening on' "$tmp/serve.log" || { cat "$tmp/serve.log" >&2; die "xferbench serve did not come up"; }

"$XFERBENCH" -q gen "$src" -s "$BYTES" >/dev/null 2>"$tmp/gen.err" || { cat "$tmp/gen.err" >&2; die "xferbench gen $src failed"; }

echo "$dev port 1, GID index $gid ($(cat "$gids/gids/$gid")), RDMA MTU $(ibv_devinfo -d "$dev" | sed -n 's/.*active_mtu:[[:space:]]*\([0-9]*\).*/\1/p' | head -n 1), 1 MiB WRITEs, $QDEPTH in flight, $SECS s per bandwidth run"
echo "file: $SIZE ($BYTES bytes) of random data, $(where "$SRC_HOST") → $(where "$DEST_HOST") (serve's root); copy --bs 1M --iodepth 16"
echo "perftest $(ib_write_bw --version 2>&1 | sed -n 's/^Version: *//p' | head -n 1), $("$XFERBENCH" --version); $ROUNDS rounds, alternating which tool goes first"
# One untimed run of each first: the device, the page cache and the emulator's code cache settle.
ib_bw >/dev/null; x_net >/dev/null

for round in $(seq 1 "$ROUNDS"); do
  if (( round % 2 )); then
    ib=$(ib_bw); il=$(ib_lat); xn=$(x_net)
  else
    xn=$(x_net); il=$(ib_lat); ib=$(ib_bw)
  fi
  cp=$(x_copy)
  read -r xbw xmed xp99 <<<"$xn"
  read -r ityp ip99 <<<"$il"
  echo "$round $ib $xbw $ityp $ip99 $xmed $xp99 $cp" >>"$RESULTS"
  printf 'round %d: ib_write_bw %s  xferbench net %s  copy %s MB/s | ib_write_lat %s/%s  xferbench %s/%s µs (typical|median/p99)\n' \
    "$round" "$(mbs "$ib")" "$(mbs "$xbw")" "$(mbs "$cp")" "$ityp" "$ip99" "$xmed" "$xp99"
done
EOF

echo "xferbench --via rdma vs perftest on soft-RoCE in a QEMU VM (scripts/lab-vm.sh: TCG, ${RDMA_VM_MEM} memory, MTU $mtu)"
machine_line
: >"$work/results"
rc=0
"$root/scripts/lab-vm.sh" run --mtu "$mtu" "${shares[@]}" \
  --env "XFERBENCH=$xferbench" --env "SIZE=$size" --env "BYTES=$bytes" --env "ROUNDS=$rounds" --env "SECS=$secs" \
  --env "QDEPTH=$qdepth" --env "XPORT=$xport" --env "RESULTS=$work/results" \
  --env "SRC_HOST=$src_host" --env "DEST_HOST=$dest_host" \
  -- bash "$work/inner.sh" || rc=$?
[ "$rc" -eq 0 ] || die "the run in the VM failed (exit $rc; see above)"
[ "$(wc -l <"$work/results")" -eq "$rounds" ] || die "the VM reported $(wc -l <"$work/results") of $rounds rounds"

python3 - "$work/results" <<'EOF'
import math, statistics, sys
rows = [[float(x) for x in line.split()[1:]] for line in open(sys.argv[1]) if line.strip()]
ib, xbw, ityp, ip99, xmed, xp99, cp = (statistics.median(c) for c in zip(*rows))
def ratio(a, b):
    return a / b if b and not math.isnan(a) else float("nan")
print()
print(f"{'':30} {'perftest':>10} {'xferbench':>10} {'ratio':>7}")
print(f"{'memory → memory, MB/s':30} {ib/1e6:>10.1f} {xbw/1e6:>10.1f} {ratio(xbw, ib):>7.3f}   ib_write_bw vs net ({ib*8/1e9:.2f} vs {xbw*8/1e9:.2f} Gb/s)")
print(f"{'file → file (copy), MB/s':30} {ib/1e6:>10.1f} {cp/1e6:>10.1f} {ratio(cp, ib):>7.3f}   ib_write_bw vs copy")
print(f"{'latency typical|median, µs':30} {ityp:>10.3f} {xmed:>10.3f} {ratio(xmed, ityp):>7.3f}   ib_write_lat t_typical vs net median_us")
print(f"{'latency p99, µs':30} {ip99:>10.3f} {xp99:>10.3f} {ratio(xp99, ip99):>7.3f}   ib_write_lat 99% vs net p99_us")
print("medians; ratio = xferbench / perftest (bandwidth: higher is better; latency: lower is better);")
print("MB/s = 10^6 B/s (perftest's MB/sec, 2^20 B/s, converted); emulated CPU, so only the ratios count")
# Half a round trip through soft-RoCE takes microseconds; far less is a measuring fault.
if not math.isnan(xmed) and xmed < ityp / 100:
    print(f"warning: xferbench's latency ({xmed} µs) is implausibly low next to ib_write_lat's ({ityp} µs)")
EOF
