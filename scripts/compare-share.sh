#!/usr/bin/env bash
# Is xferbench as fast as the tools people use, on a mounted SMB or NFS share? In the lab VM
# (scripts/lab-vm.sh run --nas: a real smbd or nfsd in a network namespace of the guest, its share
# mounted at /mnt/nas), for each share kind, in alternating order so drift hits all alike, each
# timed as a whole process, start to exit:
#   write  fio --direct=1 --rw=write --bs=1M            vs  xferbench disk MNT --write-only
#   read   fio --direct=1 --rw=read --bs=1M (same file) vs  xferbench disk FILE --read-only
#   copy   cp + sync, dd oflag=direct bs=1M conv=fsync  vs  xferbench copy (source in the guest's
#          memory, so the share's write is what is measured)
# Prints each round, the medians in MB/s (10^6 B/s) and the ratios; PASS when xferbench's disk
# figures are within 10% of fio's (0.9x or more) and its copy is at least 1.0x cp and 0.9x the
# share's write. The emulated CPU makes the absolute figures the VM's, not a NAS's: read the
# ratios. Exit status: 0 PASS, 3 BELOW, 1 error, 2 bad usage.
#
# usage: scripts/compare-share.sh [SIZE] [ROUNDS] [KINDS]
#        defaults: 128M, 3, "smb nfs"
# environment: XFERBENCH  the binary to test (default: target/release/xferbench, built here)
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh" || exit 1
size=${1:-128M}
rounds=${2:-3}
kinds=${3:-smb nfs}

need_posint ROUNDS "$rounds"
need_python3
need fio fio
size_bytes=$(need_size "$size")
for kind in $kinds; do
  case $kind in smb | nfs) ;; *) usage_error "KINDS must name smb and/or nfs (got '$kind')" ;; esac
done
"$root/scripts/lab-vm.sh" check --nas >/dev/null 2>&1 ||
  die "the lab VM is not ready: run scripts/lab-vm.sh setup (as root) first"

use_xferbench

work=$(mktemp -d "$root/target/xferbench-compare-share.XXXXXX")
remove_on_exit "$work"

# The guest's side: every operation once per round, alternating, a line per figure into
# $D/results: KIND TEST TOOL BYTES_PER_SEC.
cat >"$work/guest.sh" <<'GUEST'
set -eu
size_bytes=$SIZE_BYTES
src=/tmp/src.bin
uname -r >"$D/kernel"
head -c "$size_bytes" /dev/urandom >"$src"
timed() { # KIND TEST TOOL CMD...: run CMD; record the rate of the whole process and the tool's own
  local kind=$1 test=$2 tool=$3 start end inner; shift 3
  sync; echo 3 >/proc/sys/vm/drop_caches
  start=$(date +%s.%N)
  # Unbounded here: the VM's own timeout (RDMA_VM_TIMEOUT) bounds the whole run.
  "$@" >"$D/last.out" 2>"$D/last.err" || { echo "$tool $test failed: $(tail -n 3 "$D/last.err")" >&2; exit 1; }
  end=$(date +%s.%N)
  inner=$(python3 - "$D/last.out" "$tool" "$test" <<'PY'
import json, sys
path, tool, test = sys.argv[1:]
try:
    out = json.load(open(path))
except ValueError:
    print("-"); sys.exit()
if tool == "fio":
    print(out["jobs"][0][test]["bw_bytes"])
elif "measurements" in out:
    print(out["measurements"][0]["bytes_per_sec"])
else:
    print(out["measurement"]["bytes_per_sec"])
PY
)
  echo "$kind $test $tool $(awk -v b="$size_bytes" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", b / (e - s) }') $inner" >>"$D/results"
}
M=$LAB_NAS_MNT K=$LAB_NAS_KIND
fio_job() { fio --name=job --filename="$M/fio.bin" --rw="$1" --bs=1M --direct=1 --ioengine=io_uring --iodepth=16 --size="$size_bytes" --end_fsync=1 --output-format=json; }
for round in $(seq 1 "$ROUNDS"); do
  order="fio xferbench"; [ $((round % 2)) -eq 0 ] && order="xferbench fio"
  for tool in $order; do
    case $tool in
      fio) timed "$K" write fio fio_job write; timed "$K" read fio fio_job read; rm -f "$M/fio.bin" ;;
      xferbench) timed "$K" write xferbench "$X" -q disk "$M" --write-only --size "$size_bytes" -J
                 "$X" -q gen "$M/xf.bin" --size "$size_bytes" --force >/dev/null
                 timed "$K" read xferbench "$X" -q disk "$M/xf.bin" --read-only -J; rm -f "$M/xf.bin" ;;
    esac
  done
  copy_order="cp dd xferbench"; [ $((round % 2)) -eq 0 ] && copy_order="xferbench dd cp"
  for tool in $copy_order; do
    case $tool in
      cp) timed "$K" copy cp sh -c "cp '$src' '$M/c.bin' && sync '$M/c.bin'" ;;
      dd) timed "$K" copy dd dd if="$src" of="$M/c.bin" oflag=direct bs=1M conv=fsync status=none ;;
      xferbench) timed "$K" copy xferbench "$X" -q copy "$src" "$M/c.bin" --force -J ;;
    esac
    [ "$(stat -c %s "$M/c.bin")" = "$size_bytes" ] || { echo "$tool's copy is not $size_bytes bytes" >&2; exit 1; }
    rm -f "$M/c.bin"
  done
done
GUEST

echo "share figures: $size ($size_bytes bytes) per operation, $rounds rounds, alternating order, whole processes timed"
machine_line "$work"
: >"$work/results"
for kind in $kinds; do
  echo "booting the lab VM with an $kind share..." >&2
  "$root/scripts/lab-vm.sh" run --nas "$kind" --share "$work" \
    --env X="$xferbench" --env D="$work" --env SIZE_BYTES="$size_bytes" --env ROUNDS="$rounds" \
    -- bash "$work/guest.sh" || die "the $kind run in the VM failed"
done

echo "lab VM: kernel $(cat "$work/kernel"), emulated CPU (TCG); xferbench $("$xferbench" --version | cut -d' ' -f2); $(fio --version)"
set +e
python3 - "$work/results" <<'PY'
import statistics, sys
rates, inner = {}, {}
for line in open(sys.argv[1]):
    kind, test, tool, rate, own = line.split()
    rates.setdefault((kind, test, tool), []).append(float(rate))
    if own != "-":
        inner.setdefault((kind, test, tool), []).append(float(own))
med = {key: statistics.median(values) for key, values in rates.items()}
own = {key: statistics.median(values) for key, values in inner.items()}
print("whole processes (the tool's own figure in brackets), MB/s:")
for (kind, test, tool), values in sorted(rates.items()):
    figures = "  ".join(f"{v/1e6:,.1f}" for v in values)
    said = f" [{own[(kind, test, tool)]/1e6:,.1f}]" if (kind, test, tool) in own else ""
    print(f"  {kind} {test:<5} {tool:<9} {figures}{said}")
print("\nmedians of whole processes (MB/s = 10^6 B/s):")
ok = True
for kind in sorted({k for k, _, _ in med}):
    w, r = med[(kind, "write", "xferbench")], med[(kind, "read", "xferbench")]
    fw, fr = med[(kind, "write", "fio")], med[(kind, "read", "fio")]
    cp, dd, xc = (med[(kind, "copy", t)] for t in ("cp", "dd", "xferbench"))
    checks = [w / fw >= 0.9, r / fr >= 0.9, xc / cp >= 1.0, xc / w >= 0.9]
    ok &= all(checks)
    print(f"  {kind}: write fio {fw/1e6:,.1f} xferbench {w/1e6:,.1f} ({w/fw:.2f}x); "
          f"read fio {fr/1e6:,.1f} xferbench {r/1e6:,.1f} ({r/fr:.2f}x); "
          f"copy cp {cp/1e6:,.1f} dd {dd/1e6:,.1f} xferbench {xc/1e6:,.1f} "
          f"({xc/cp:.2f}x cp, {xc/w:.2f}x the share's write)")
    if all(k in own for k in [(kind, "write", "fio"), (kind, "write", "xferbench"), (kind, "read", "fio"), (kind, "read", "xferbench")]):
        print(f"     own figures: write {own[(kind, 'write', 'xferbench')]/own[(kind, 'write', 'fio')]:.2f}x fio's, "
              f"read {own[(kind, 'read', 'xferbench')]/own[(kind, 'read', 'fio')]:.2f}x fio's")
print("PASS" if ok else "BELOW", "(needs disk >= 0.9x fio, copy >= 1.0x cp and >= 0.9x the share's write)")
sys.exit(0 if ok else 3)
PY
status=$?
set -e
exit "$status"
