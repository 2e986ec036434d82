#!/usr/bin/env bash
# Does `xferbench copy` reach the bound? Copies a SIZE file of random data between the two network
# namespaces of scripts/lab.sh and checks copy >= 0.9 x min(source read, network, destination write),
# with all four measured here, in every round, in alternating order so drift hits all alike.
# Prints each round, the medians in MB/s (10^6 B/s) and Gb/s, the bound and which stage sets it,
# and PASS or BELOW. Exit status: 0 PASS, 3 BELOW, 1 error, 2 bad usage.
#
# usage: sudo scripts/compare-copy.sh [SIZE] [ROUNDS] [STREAMS]
#        defaults: 4G, 3, 4
# environment: XFERBENCH       the binary to test (default: target/release/xferbench, built here)
#              COPY_DIR        where the work dir goes (default: the project's target/); the source
#                              file lives there, and with DEST_ON=same-disk the destination root too
#              DEST_ON         same-disk (default): the destination root is in COPY_DIR, on the
#                                source's disk, so during the copy reading and writing compete for
#                                one device; a second bound, 1/(1/read + 1/write), is printed
#                              ram-disk: the destination root is on a device of its own, an ext4
#                                image of SIZE + 1 GiB in /dev/shm attached to a loop device; it is
#                                memory-backed, so its write rate is not a real disk's
#              XFERBENCH_PORT  serve port (default 5301)
#              NET_SECS        duration of the network run (default 5)
#              LAB_ARGS        options for `scripts/lab.sh up`, e.g. "--rate 10gbit"
#              LAB_PREFIX, LAB_SUBNET   passed on to scripts/lab.sh
# Only the lab's own addresses are used. The lab is (re)created at the start and taken down at the end.
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh" || exit 1
size=${1:-4G}
rounds=${2:-3}
streams=${3:-4}
port=${XFERBENCH_PORT:-5301}
net_secs=${NET_SECS:-5}
copy_dir=${COPY_DIR:-$root/target}
lab_args=${LAB_ARGS:-}
dest_on=${DEST_ON:-same-disk}
need=0.9

need_posint ROUNDS "$rounds"
need_posint STREAMS "$streams"
need_posint NET_SECS "$net_secs"
case $dest_on in
  same-disk|ram-disk) ;;
  *) usage_error "DEST_ON must be same-disk or ram-disk (got '$dest_on')" ;;
esac
[ "$(id -u)" -eq 0 ] || die "must run as root (the lab uses network namespaces): sudo scripts/compare-copy.sh $*"
need_python3

size_bytes=$(need_size "$size")

use_xferbench

mkdir -p "$copy_dir"
# Room for the source plus (same-disk) one SIZE written at a time (disk test file or the copy),
# and 1 GiB spare.
if [ "$dest_on" = same-disk ]; then want=$((2 * size_bytes + 1073741824)); else want=$((size_bytes + 1073741824)); fi
free=$(df -PB1 "$copy_dir" | awk 'NR == 2 {print $4}')
[ "$free" -ge "$want" ] ||
  die "$copy_dir has $((free / 1000000)) MB free; SIZE $size needs $((want / 1000000)) MB (set COPY_DIR)"

# ram-disk: the image is SIZE + 1 GiB (ext4's journal and metadata, and slack); /dev/shm must hold
# all of it, as the blocks written and freed again stay allocated in the image, plus 512 MiB spare.
img_bytes=$((size_bytes + 1073741824))
if [ "$dest_on" = ram-disk ]; then
  for cmd in losetup mkfs.ext4 truncate mount umount mountpoint; do
    command -v "$cmd" >/dev/null || die "DEST_ON=ram-disk needs $cmd"
  done
  [ -d /dev/shm ] || die "DEST_ON=ram-disk needs /dev/shm (a tmpfs), and there is none"
  shm_free=$(df -PB1 /dev/shm | awk 'NR == 2 {print $4}')
  [ "$shm_free" -ge $((img_bytes + 536870912)) ] ||
    die "/dev/shm has $((shm_free / 1000000)) MB free; DEST_ON=ram-disk with SIZE $size needs $(((img_bytes + 536870912) / 1000000)) MB (an image of SIZE + 1 GiB, and 512 MiB spare); use a smaller SIZE or DEST_ON=same-disk"
fi

img=
mnt=
# On exit the server goes first (track_pid): it holds files open on the destination root. Then
# the RAM disk, in order: unmount, detach the loop device, remove the image and mount point.
# Each step looks at the system, not at what the script got as far as noting, so a failure (or a
# signal) half-way is cleaned up as well. Then the lab comes down and the work dir goes.
# shellcheck disable=SC2317 # run on exit, through cleanup_add
ram_disk_down() {
  local d
  if [ -n "$mnt" ] && mountpoint -q "$mnt" 2>/dev/null; then
    umount "$mnt" 2>/dev/null || { sleep 1; umount "$mnt" 2>/dev/null; } ||
      { echo "compare-copy: warning: $mnt is busy, unmounting it lazily" >&2; umount -l "$mnt" || true; }
  fi
  if [ -n "$img" ]; then
    for d in $(losetup -n -O NAME -j "$img" 2>/dev/null || true); do
      losetup -d "$d" || echo "compare-copy: warning: could not detach $d (backed by $img)" >&2
    done
    rm -f "$img" || true
  fi
  if [ -n "$mnt" ]; then rmdir "$mnt" 2>/dev/null || echo "compare-copy: warning: could not remove $mnt" >&2; fi
}
cleanup_add ram_disk_down

work=$(mktemp -d "$copy_dir/xferbench-compare-copy.XXXXXX")
remove_on_exit "$work"
src=$work/src.bin
loopdev=
if [ "$dest_on" = ram-disk ]; then
  img=$(mktemp /dev/shm/xferbench-dest.XXXXXX)
  mnt=$(mktemp -d -t xferbench-dest.XXXXXX)
  truncate -s "$img_bytes" "$img"
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img" ||
    die "mkfs.ext4 on $img failed"
  loopdev=$(losetup -f --show "$img") || die "losetup could not attach $img to a loop device"
  mount "$loopdev" "$mnt" || die "could not mount $loopdev on $mnt"
  dest=$mnt/dest
  dest_desc="RAM disk: $loopdev, ext4 on a $((img_bytes / 1000000)) MB image in /dev/shm, mounted on $mnt"
else
  dest=$work/dest
  dest_desc="same disk as the source ($(df -P "$work" | awk 'NR == 2 {print $1}'), in $work)"
fi
mkdir "$dest"

token=$(new_token)
# Generous bounds for one step: 2 minutes plus SIZE at 20 MB/s.
tmo=$((120 + size_bytes / 20000000))

# step NAME KEY CMD...: run CMD with a time limit; print the number at KEY (a.b.c, digits index)
step() {
  local name=$1 key=$2
  shift 2
  if ! timeout "$tmo" "$@" >"$work/$name.json" 2>"$work/$name.err"; then
    echo "compare-copy: $name failed: $*" >&2; cat "$work/$name.err" >&2; exit 1
  fi
  python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[int(k)] if k.isdigit() else v[k]
print(float(v))' "$work/$name.json" "$key" ||
    { echo "compare-copy: no $key in the output of $name:" >&2; cat "$work/$name.json" >&2; exit 1; }
}

measure_read() {
  uncache "$src"
  step read measurements.0.bytes_per_sec "$xferbench" disk "$src" --read-only -J
}
measure_net() {
  step net directions.0.receiver.bytes_per_sec \
    ip netns exec "$ns_a" "$xferbench" net "$lab_addr:$port" -P "$streams" -t "$net_secs" --token "$token" -J
}
measure_write() {
  step write measurements.0.bytes_per_sec "$xferbench" disk "$dest" --write-only --size "$size" -J
}
measure_copy() {
  uncache "$src"
  step copy measurement.bytes_per_sec \
    ip netns exec "$ns_a" "$xferbench" copy "$src" "$lab_addr:$port:copy.bin" -P "$streams" --token "$token" -J
  local got
  if [ ! -f "$dest/copy.bin" ]; then
    echo "compare-copy: warning: no copy.bin in the destination root after the copy" >&2
  else
    got=$(stat -c %s "$dest/copy.bin")
    if [ "$got" != "$size_bytes" ]; then
      echo "compare-copy: warning: the copy on the destination is $got bytes, expected $size_bytes" >&2
    fi
  fi
  rm -f "$dest/copy.bin"
}

# shellcheck disable=SC2086 # LAB_ARGS is a list of options
lab_up $lab_args

echo "making the source: $size of random data"
"$xferbench" gen "$src" --size "$size" >&2

ip netns exec "$ns_b" "$xferbench" serve --listen "$lab_addr:$port" --root "$dest" --token "$token" \
  >"$work/serve.out" 2>"$work/serve.err" &
serve_pid=$!
track_pid "$serve_pid"
if ! wait_for_line "$work/serve.out" '^listening on' 10 "$serve_pid"; then
  echo "compare-copy: xferbench serve on $lab_addr:$port did not start within 10 s:" >&2
  cat "$work/serve.out" "$work/serve.err" >&2
  exit 1
fi

echo "copy $size ($size_bytes bytes) from $ns_a to $ns_b ($lab_addr), -P $streams, $rounds rounds, alternating order"
echo "destination (DEST_ON=$dest_on): $dest_desc"
machine_line "$(dirname "$src")" "$dest"
echo "xferbench $("$xferbench" --version | cut -d' ' -f2)"
results=$work/results
: >"$results"
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then
    r=$(measure_read); n=$(measure_net); w=$(measure_write); c=$(measure_copy)
  else
    c=$(measure_copy); w=$(measure_write); n=$(measure_net); r=$(measure_read)
  fi
  echo "$r $n $w $c" >>"$results"
  printf 'round %d: source read %s  network %s  destination write %s  copy %s MB/s\n' \
    "$round" "$(mega "$r")" "$(mega "$n")" "$(mega "$w")" "$(mega "$c")"
done

dev=$(df -P "$work" | awk 'NR == 2 {print $1}')
set +e
python3 - "$results" "$need" "$streams" "$dev" "$dest_on" "$loopdev" <<'EOF'
import statistics, sys
rows = [list(map(float, line.split())) for line in open(sys.argv[1])]
need, streams, dev, dest_on, loopdev = float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
names = ["source read", f"network -P {streams}", "destination write", f"copy -P {streams}"]
med = [statistics.median(r[i] for r in rows) for i in range(4)]
fmt = lambda v, w=(8, 7): f"{v/1e6:>{w[0]},.0f} MB/s {v*8/1e9:>{w[1]}.2f} Gb/s"
print(f"\nmedians of {len(rows)} rounds (MB/s = 10^6 B/s):")
for name, v in zip(names, med):
    print(f"  {name:<20} {fmt(v)}")
stage = min(range(3), key=lambda i: med[i])
bound, copy = med[stage], med[3]
ratio = copy / bound if bound else float("nan")
verdict = "PASS" if ratio >= need else "BELOW"
print(f"bound (slowest stage): {names[stage]}  {fmt(bound, (0, 0))}")
print(f"copy / bound: {ratio:.3f}  {verdict} (needs >= {need})")
if dest_on == "same-disk":
    # One device serving both in turn: a byte costs 1/read + 1/write seconds of it.
    r, w = med[0], med[2]
    shared = 1 / (1 / r + 1 / w) if r and w else float("nan")
    sratio = copy / shared if shared else float("nan")
    print(f"shared-disk bound: 1/(1/read + 1/write) = {shared/1e6:,.0f} MB/s {shared*8/1e9:.2f} Gb/s")
    print(f"copy / shared-disk bound: {sratio:.3f}")
    if shared <= med[1]:
        print(f"relevant bound here: the shared-disk bound ({shared/1e6:,.0f} MB/s), as source and "
              f"destination are one device ({dev}) and it is below the network; the verdict above "
              f"is against min(...) all the same")
    else:
        print(f"relevant bound here: the slowest-stage bound ({names[stage]}), as the network is "
              f"below even the shared-disk bound")
    print(f"note: source and destination share one disk here ({dev}): during the copy, reading and "
          "writing compete for it, while each stage was measured alone")
else:
    print(f"note: the destination is a loop device ({loopdev}) backed by RAM (an ext4 image in "
          "/dev/shm), so its write rate is memory-bound, not a real disk's; the bound is normally "
          f"the source read ({dev}) or the network")
    if stage == 2:
        print("note: here the destination write is the slowest stage all the same: with no disk "
              "behind it, what limits it is the CPU (ext4, the loop device and tmpfs copying), "
              "which the copy's network streams compete for too")
sys.exit(0 if verdict == "PASS" else 3)
EOF
status=$?
set -e
exit "$status"
