#!/usr/bin/env bash
# xferbench disk against fio on the same directory, file size, block size and depth (O_DIRECT,
# io_uring), run alternately so drift on a noisy disk hits both tools alike.
# Prints each round, the median of each tool, and the ratio xferbench / fio.
#
# usage: scripts/compare-disk.sh [DIR] [SIZE] [BS] [IODEPTH] [ROUNDS]
#        defaults: a temp dir under /var/tmp, 4G, 1M, 16, 7
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-}
size=${2:-4G}
bs=${3:-1M}
depth=${4:-16}
rounds=${5:-7}

command -v fio >/dev/null || { echo "compare-disk: fio is not installed (Debian: apt-get install fio)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "compare-disk: python3 is needed to read the JSON" >&2; exit 1; }

made_dir=
if [ -z "$dir" ]; then
  dir=$(mktemp -d /var/tmp/xferbench-compare.XXXXXX)
  made_dir=$dir
fi
cleanup() {
  rm -f "$dir/fio.test"
  if [ -n "$made_dir" ]; then rm -rf "$made_dir"; fi
}
trap cleanup EXIT

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
xferbench=$root/target/release/xferbench
results=$(mktemp)
trap 'cleanup; rm -f "$results"' EXIT

run_fio() { # rw
  fio --name="$1" --filename="$dir/fio.test" --size="$size" --bs="$bs" --iodepth="$depth" \
      --ioengine=io_uring --direct=1 --rw="$1" --end_fsync=1 --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; rw=sys.argv[1]; print(j[rw]["bw_bytes"])' "$1"
}

run_xferbench() {
  "$xferbench" disk "$dir" --size "$size" --bs "$bs" --iodepth "$depth" --engine io_uring --quiet -J |
    python3 -c 'import json,sys; m=json.load(sys.stdin)["measurements"]; print(m[0]["bytes_per_sec"], m[1]["bytes_per_sec"])'
}

gb() { python3 -c "print(f'{float(\"$1\")/1e9:.2f} GB/s')"; }

echo "disk: $dir  size $size  bs $bs  iodepth $depth  O_DIRECT  io_uring  $rounds rounds, alternating"
echo "fio $(fio --version)  xferbench $("$xferbench" --version | cut -d' ' -f2)"
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then
    read -r xw xr <<<"$(run_xferbench)"
    rm -f "$dir/fio.test"; fw=$(run_fio write); fr=$(run_fio read)
  else
    rm -f "$dir/fio.test"; fw=$(run_fio write); fr=$(run_fio read)
    read -r xw xr <<<"$(run_xferbench)"
  fi
  echo "$fw $xw $fr $xr" >>"$results"
  printf 'round %d: write fio %s  xferbench %s | read fio %s  xferbench %s\n' \
    "$round" "$(gb "$fw")" "$(gb "$xw")" "$(gb "$fr")" "$(gb "$xr")"
done

python3 - "$results" <<'EOF'
import statistics, sys
rows = [list(map(float, line.split())) for line in open(sys.argv[1])]
ok = True
for name, f, x in (("write", 0, 1), ("read", 2, 3)):
    fio = statistics.median(r[f] for r in rows)
    xb = statistics.median(r[x] for r in rows)
    ratio = xb / fio
    ok &= abs(ratio - 1) <= 0.10
    print(f"median {name:5}: fio {fio/1e9:.2f} GB/s ({fio*8/1e9:.1f} Gb/s)  "
          f"xferbench {xb/1e9:.2f} GB/s ({xb*8/1e9:.1f} Gb/s)  ratio {ratio:.3f}")
print("within 10% of fio on both:", "yes" if ok else "no")
EOF
