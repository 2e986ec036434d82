#!/usr/bin/env bash
# xferbench disk against fio on the same directory, file size, block size and depth (O_DIRECT,
# io_uring), run alternately so that drift on a noisy disk hits both tools alike:
#  - for each depth, a write (through fsync) then a read of a fresh file, each tool its own file;
#  - for each depth, a read-only pass where both tools read one fixed random file.
# Prints the machine, both tools' io_uring setup flags (fio's as strace sees them), each round,
# and per depth the median of each tool and the ratio xferbench / fio.
#
# usage: scripts/compare-disk.sh [DIR] [SIZE] [BS] [DEPTHS] [ROUNDS]
#        defaults: a temp dir under /var/tmp, 1G, 1M, 1,16,64, 5
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh" || exit 1
dir=${1:-}
size=${2:-1G}
bs=${3:-1M}
depths=${4:-1,16,64}
rounds=${5:-5}

need fio fio
need_python3

if [ -z "$dir" ]; then
  dir=$(mktemp -d /var/tmp/xferbench-compare.XXXXXX)
  remove_on_exit "$dir"
fi
results=$(mktemp)
cleanup_add rm -f "$dir/fio.test" "$dir/fixed.data" "$results"

build_release

fio_job() { # rw file depth
  fio --name="$1" --filename="$2" --size="$size" --bs="$bs" --iodepth="$3" \
      --ioengine=io_uring --direct=1 --rw="$1" --end_fsync=1 --output-format=json "${@:4}"
}

run_fio() { # rw file depth [extra fio options]
  fio_job "$@" 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(j[sys.argv[1]]["bw_bytes"])' "$1"
}

run_xferbench() { # depth: write then read in $dir
  "$xferbench" disk "$dir" --size "$size" --bs "$bs" --iodepth "$1" --engine io_uring --quiet -J |
    python3 -c 'import json,sys; m=json.load(sys.stdin)["measurements"]; print(m[0]["bytes_per_sec"], m[1]["bytes_per_sec"])'
}

read_xferbench() { # depth: read the fixed file
  "$xferbench" disk "$dir/fixed.data" --read-only --bs "$bs" --iodepth "$1" --engine io_uring --quiet -J |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["measurements"][0]["bytes_per_sec"])'
}

# The flags fio's ring was set up with, as strace decodes io_uring_setup's params.
fio_ring_flags() {
  if ! command -v strace >/dev/null; then
    echo "(strace not installed: apt-get install strace)"
    return
  fi
  local trace
  trace=$(mktemp)
  strace -f -e trace=io_uring_setup -o "$trace" \
    fio --name=flags --filename="$dir/fixed.data" --size=4M --bs=4k --iodepth=4 \
      --ioengine=io_uring --direct=1 --rw=read --readonly --output-format=json >/dev/null 2>&1 || true
  # strace names the flags it knows and prints the rest in hex: name those too.
  grep -o 'io_uring_setup([0-9]*, {flags=[^,]*' "$trace" | tail -n1 | sed 's/.*flags=//' |
    python3 -c '
import sys
names = {0x100: "COOP_TASKRUN", 0x1000: "SINGLE_ISSUER", 0x2000: "DEFER_TASKRUN"}
got = []
for part in sys.stdin.read().strip().split("|"):
    if part.startswith("0x"):
        bits = int(part, 16)
        got += [name for bit, name in names.items() if bits & bit]
    elif part and part != "0":
        got.append(part.removeprefix("IORING_SETUP_"))
print("|".join(got) or "none")' || true # no io_uring_setup traced: "none", and the trace still goes
  rm -f "$trace"
}

x_ring_flags() {
  "$xferbench" disk "$dir/fixed.data" --read-only --size 4M --bs 1M --iodepth 4 --engine io_uring --quiet -J |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["measurements"][0]["conditions"].get("ring_flags", "none"))'
}

"$xferbench" gen "$dir/fixed.data" --size "$size" --quiet
echo "disk: $dir  size $size  bs $bs  depths $depths  O_DIRECT  io_uring  $rounds rounds per depth, alternating"
machine_line "$dir"
echo "fio $(fio --version)  xferbench $("$xferbench" --version | cut -d' ' -f2)"
echo "io_uring setup flags: fio $(fio_ring_flags)  xferbench $(x_ring_flags)"

for depth in ${depths//,/ }; do
  for round in $(seq 1 "$rounds"); do
    if [ $((round % 2)) -eq 1 ]; then
      read -r xw xr <<<"$(run_xferbench "$depth")"
      rm -f "$dir/fio.test"; fw=$(run_fio write "$dir/fio.test" "$depth"); fr=$(run_fio read "$dir/fio.test" "$depth")
      xo=$(read_xferbench "$depth"); fo=$(run_fio read "$dir/fixed.data" "$depth" --readonly)
    else
      rm -f "$dir/fio.test"; fw=$(run_fio write "$dir/fio.test" "$depth"); fr=$(run_fio read "$dir/fio.test" "$depth")
      read -r xw xr <<<"$(run_xferbench "$depth")"
      fo=$(run_fio read "$dir/fixed.data" "$depth" --readonly); xo=$(read_xferbench "$depth")
    fi
    rm -f "$dir/fio.test"
    echo "$depth $fw $xw $fr $xr $fo $xo" >>"$results"
    printf 'depth %2d round %d: write fio %s xferbench %s | read fio %s xferbench %s | read-only fio %s xferbench %s GB/s\n' \
      "$depth" "$round" "$(giga "$fw")" "$(giga "$xw")" "$(giga "$fr")" "$(giga "$xr")" "$(giga "$fo")" "$(giga "$xo")"
  done
done

python3 - "$results" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
print()
print(f"{'depth':>5} {'pass':<10} {'fio GB/s':>9} {'xferbench GB/s':>15} {'ratio':>6}")
ok = True
for depth in dict.fromkeys(r[0] for r in rows):
    mine = [list(map(float, r[1:])) for r in rows if r[0] == depth]
    for name, f, x in (("write", 0, 1), ("read", 2, 3), ("read-only", 4, 5)):
        fio = statistics.median(r[f] for r in mine)
        xb = statistics.median(r[x] for r in mine)
        ratio = xb / fio
        ok &= abs(ratio - 1) <= 0.10
        print(f"{depth:>5} {name:<10} {fio/1e9:9.2f} {xb/1e9:15.2f} {ratio:6.3f}")
print("medians of the rounds; write includes the final fsync; read-only: both tools read one file")
print("within 10% of fio on every pass:", "yes" if ok else "no")
EOF
