#!/usr/bin/env bash
# Is `xferbench copy` between two local paths as fast as the tools people use? Copies a SIZE file
# of random data from one directory to another of the same disk (and, when TMPFS_DIR is given, to
# that directory too) with `cp` (then `sync FILE`, so its flush is timed as ours is),
# `dd iflag=direct oflag=direct bs=1M conv=fsync` and `xferbench copy`, in alternating order so
# drift hits all alike, the source dropped from the page cache before each. Each is timed as a
# whole process. Prints each round, the medians in MB/s (10^6 B/s), the ratios to cp and dd, the
# machine, and PASS when xferbench is at least 1.0x cp. Exit status: 0 PASS, 3 BELOW, 1 error,
# 2 bad usage.
#
# usage: scripts/compare-local.sh [SIZE] [ROUNDS] [TMPFS_DIR]
#        defaults: 1G, 3, none
# environment: XFERBENCH  the binary to test (default: target/release/xferbench, built here)
#              COPY_DIR   where the work dir goes (default: the project's target/)
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh" || exit 1
size=${1:-1G}
rounds=${2:-3}
tmpfs_dir=${3:-}
copy_dir=${COPY_DIR:-$root/target}
need=1.0

need_posint ROUNDS "$rounds"
need_python3
need dd coreutils
size_bytes=$(need_size "$size")
if [ -n "$tmpfs_dir" ]; then
  [ -d "$tmpfs_dir" ] || usage_error "TMPFS_DIR $tmpfs_dir is not a directory"
fi

use_xferbench

mkdir -p "$copy_dir"
free=$(df -PB1 "$copy_dir" | awk 'NR == 2 {print $4}')
want=$((2 * size_bytes + 1073741824))
[ "$free" -ge "$want" ] ||
  die "$copy_dir has $((free / 1000000)) MB free; SIZE $size needs $((want / 1000000)) MB (set COPY_DIR)"

work=$(mktemp -d "$copy_dir/xferbench-compare-local.XXXXXX")
remove_on_exit "$work"
src=$work/src/src.bin
mkdir "$work/src" "$work/dst"
targets=("$work/dst")
if [ -n "$tmpfs_dir" ]; then
  tmpfs_work=$(mktemp -d "$tmpfs_dir/xferbench-compare-local.XXXXXX")
  remove_on_exit "$tmpfs_work"
  targets+=("$tmpfs_work")
fi

# Generous bound for one copy: 2 minutes plus SIZE at 20 MB/s.
tmo=$((120 + size_bytes / 20000000))

# copy_with TOOL DIR: copy the source into DIR with TOOL (cp, dd, xferbench), from a cold page
# cache; print the rate in bytes/s of the whole process, and remove the copy.
copy_with() {
  local tool=$1 dir=$2 start end dst=$2/copy.bin
  uncache "$src"
  start=$(date +%s.%N)
  case $tool in
    cp) timeout "$tmo" cp "$src" "$dst" && timeout "$tmo" sync "$dst" ;;
    dd) timeout "$tmo" dd if="$src" of="$dst" iflag=direct oflag=direct bs=1M conv=fsync status=none ;;
    xferbench) timeout "$tmo" "$xferbench" -q copy "$src" "$dst" >/dev/null ;;
  esac || die "$tool failed copying $src to $dst"
  end=$(date +%s.%N)
  [ "$(stat -c %s "$dst")" = "$size_bytes" ] || die "$tool's copy in $dir is not $size_bytes bytes"
  rm -f "$dst"
  python3 -c "print($size_bytes / ($end - $start))"
}

echo "making the source: $size of random data"
"$xferbench" gen "$src" --size "$size" >&2

echo "copy $size ($size_bytes bytes), $rounds rounds, alternating order, whole processes timed"
machine_line "$work" "${targets[@]:1}"
echo "xferbench $("$xferbench" --version | cut -d' ' -f2)"
results=$work/results
: >"$results"
for target in "${targets[@]}"; do
  if [ "$target" = "$work/dst" ]; then where="same disk"; else where="tmpfs"; fi
  for round in $(seq 1 "$rounds"); do
    if [ $((round % 2)) -eq 1 ]; then
      c=$(copy_with cp "$target"); d=$(copy_with dd "$target"); x=$(copy_with xferbench "$target")
    else
      x=$(copy_with xferbench "$target"); d=$(copy_with dd "$target"); c=$(copy_with cp "$target")
    fi
    printf '%s\t%s\t%s\t%s\n' "$where" "$c" "$d" "$x" >>"$results"
    printf '%s, round %d: cp %s  dd %s  xferbench %s MB/s\n' \
      "$where" "$round" "$(mega "$c")" "$(mega "$d")" "$(mega "$x")"
  done
done

set +e
python3 - "$results" "$need" <<'EOF'
import statistics, sys
need = float(sys.argv[2])
rows = {}
for line in open(sys.argv[1]):
    where, *rates = line.rstrip("\n").split("\t")
    rows.setdefault(where, []).append(list(map(float, rates)))
print("\nmedians (MB/s = 10^6 B/s):")
worst = None
for where, runs in rows.items():
    cp, dd, xf = (statistics.median(r[i] for r in runs) for i in range(3))
    ratio = xf / cp
    worst = ratio if worst is None else min(worst, ratio)
    print(f"  {where:<10} cp {cp/1e6:>7,.0f}  dd {dd/1e6:>7,.0f}  xferbench {xf/1e6:>7,.0f}"
          f"   xferbench/cp {ratio:.2f}  xferbench/dd {xf/dd:.2f}")
verdict = "PASS" if worst >= need else "BELOW"
print(f"xferbench / cp, the lowest: {worst:.2f}  {verdict} (needs >= {need})")
sys.exit(0 if verdict == "PASS" else 3)
EOF
status=$?
set -e
exit "$status"
