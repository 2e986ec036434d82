#!/usr/bin/env bash
# Is `xferbench copy -r` as fast as the tools people copy trees with, between two directories of
# one disk? For many small files (NSMALL x SMALL) and a few large ones (NLARGE x LARGE) of random
# data: `cp -rp`, `rsync -a` and `tar c | tar x` (each followed by `sync -f DEST`, one syncfs, so
# their flush is timed) against `xferbench copy -r --fsync end` (its own one syncfs), in
# alternating order so drift hits all alike, the page cache dropped before each (as root). Each is
# timed as a whole process. `xferbench copy -r` with its default `--fsync each` (every file
# fsynced before its rename) is timed too, and shown apart: none of the others does that. Prints
# each round, the medians in MB/s (10^6 B/s) and files/s, the ratios to the best of the three, the
# machine, and PASS when xferbench --fsync end is at least 1.0x the best for both sets.
# Exit status: 0 PASS, 3 BELOW, 1 error, 2 bad usage.
#
# With VIA=ssh the trees go through an OpenSSH sshd started here on 127.0.0.1 (its own keys;
# no system sshd is touched), every tool with the same cipher: `scp -rp`, `rsync -a -e ssh` and
# `tar c | ssh tar x` (each followed by `ssh sync -f DEST`) against `xferbench copy -r --via ssh
# --fsync end` at -P 1 and at -P STREAMS, and --fsync each at -P STREAMS apart. With VIA=tcp,
# xferbench goes to `xferbench serve` (started here) over --via tcp, the others as with ssh.
# Over a network the goals are: small files at least 1.5x rsync, large at least 1.0x the best.
#
# usage: scripts/compare-tree.sh [NSMALL] [SMALL] [NLARGE] [LARGE] [ROUNDS]
#        defaults: 10000 64K 100 64M 3
# environment: XFERBENCH  the binary to test (default: target/release/xferbench, built here)
#              COPY_DIR   where the work dir goes (default: the project's target/)
#              VIA        local (default), ssh or tcp
#              STREAMS    xferbench's -P over a network (default 2)
#              CIPHER     every SSH tool's cipher (default aes128-gcm@openssh.com)
#              DEST_DIR   where the copies land (default: beside the trees); a tmpfs such as
#                         /dev/shm takes the destination disk out, so the path itself is measured
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh" || exit 1
nsmall=${1:-10000}
small=${2:-64K}
nlarge=${3:-100}
large=${4:-64M}
rounds=${5:-3}
copy_dir=${COPY_DIR:-$root/target}

need_posint NSMALL "$nsmall"
need_posint NLARGE "$nlarge"
need_posint ROUNDS "$rounds"
via=${VIA:-local}
streams=${STREAMS:-2}
cipher=${CIPHER:-aes128-gcm@openssh.com}
need_posint STREAMS "$streams"
case $via in local | ssh | tcp) ;; *) usage_error "VIA is local, ssh or tcp, not '$via'" ;; esac
[ "$via" = local ] || need_sshd
need_python3
need rsync rsync
need tar tar
small_bytes=$(need_size "$small")
large_bytes=$(need_size "$large")

use_xferbench

mkdir -p "$copy_dir"
free=$(df -PB1 "$copy_dir" | awk 'NR == 2 {print $4}')
want=$((2 * (nsmall * small_bytes + nlarge * large_bytes) + 1073741824))
[ "$free" -ge "$want" ] ||
  die "$copy_dir has $((free / 1000000)) MB free; the trees need $((want / 1000000)) MB (set COPY_DIR)"

work=$(mktemp -d "$copy_dir/xferbench-compare-tree.XXXXXX")
remove_on_exit "$work"
dst_root=$work
if [ -n "${DEST_DIR:-}" ]; then
  dst_root=$(mktemp -d "$DEST_DIR/xferbench-compare-tree-dst.XXXXXX")
  remove_on_exit "$dst_root"
fi
if [ "$via" != local ]; then
  start_sshd "$work"
  ssh_cmd=(ssh "${ssh_opts[@]}" -p "$port" -c "$cipher")
  far="$user@127.0.0.1"
fi
if [ "$via" = tcp ]; then
  token=$(new_token)
  serve_port=$(free_port)
  "$xferbench" serve --listen "127.0.0.1:$serve_port" --root "$dst_root" >"$work/serve.log" 2>&1 &
  track_pid $!
  wait_for_line "$work/serve.log" "listening" 10 ||
    { echo "$prog: serve did not come up:" >&2; cat "$work/serve.log" >&2; exit 1; }
fi

cold() { # the whole page cache dropped, so each tool reads the source from the disk
  sync
  if [ -w /proc/sys/vm/drop_caches ]; then echo 3 >/proc/sys/vm/drop_caches; fi
}
[ -w /proc/sys/vm/drop_caches ] || echo "not root: the page cache is not dropped between runs, so sources may be read from memory" >&2

# make_tree DIR COUNT BYTES: COUNT files of BYTES random bytes, 100 to a directory.
make_tree() {
  python3 - "$1" "$2" "$3" <<'PY'
import os, sys
root, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(count):
    d = os.path.join(root, f"d{i // 100:04d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}"), "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n
PY
}

# file_bytes DIR: the bytes of the regular files below DIR (directories' sizes differ between
# file systems).
file_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f\n", s }'; }

# copy_with TOOL SET: copy tree SET into $dst_root/dst with TOOL, from a cold cache; print the
# whole process's seconds; check the count and bytes, and remove the copy (untimed).
copy_with() {
  local tool=$1 set=$2 start end src=$work/$2 dst=$dst_root/dst
  rm -rf "$dst"; mkdir "$dst"; cold
  start=$(date +%s.%N)
  case $tool in
    scp) scp -q -rp "${ssh_opts[@]}" -P "$port" -c "$cipher" "$src" "$far:$dst/" && "${ssh_cmd[@]}" "$far" sync -f "$dst" ;;
    rsync-ssh) rsync -a -e "${ssh_cmd[*]}" "$src" "$far:$dst/" && "${ssh_cmd[@]}" "$far" sync -f "$dst" ;;
    tar-ssh) tar -C "$work" -cf - "$set" | "${ssh_cmd[@]}" "$far" tar -C "$dst" -xpf - && "${ssh_cmd[@]}" "$far" sync -f "$dst" ;;
    xferbench-ssh-1 | xferbench-ssh-n | xferbench-ssh-each)
      local p=$streams fsync=end
      [ "$tool" = xferbench-ssh-1 ] && p=1
      [ "$tool" = xferbench-ssh-each ] && fsync=each
      "$xferbench" -q copy -r "$src" "$far:$port:$dst" --via ssh -P "$p" --fsync "$fsync" --cipher "$cipher" \
        --identity "$work/id" --known-hosts "$work/known_hosts" -F /dev/null >/dev/null ;;
    xferbench-tcp-n | xferbench-tcp-each)
      local fsync=end
      [ "$tool" = xferbench-tcp-each ] && fsync=each
      "$xferbench" -q copy -r "$src" "127.0.0.1:$serve_port:dst" --via tcp -P "$streams" --fsync "$fsync" >/dev/null ;;
    cp) cp -rp "$src" "$dst/" && sync -f "$dst" ;;
    rsync) rsync -a "$src" "$dst/" && sync -f "$dst" ;;
    tar) tar -C "$work" -cf - "$set" | tar -C "$dst" -xpf - && sync -f "$dst" ;;
    xferbench) "$xferbench" -q copy -r "$src" "$dst" --fsync end >/dev/null ;;
    xferbench-each) "$xferbench" -q copy -r "$src" "$dst" >/dev/null ;;
  esac || die "$tool failed copying $src"
  end=$(date +%s.%N)
  local files bytes
  files=$(find "$dst/$set" -type f | wc -l)
  bytes=$(file_bytes "$dst/$set")
  [ "$files" = "$(find "$src" -type f | wc -l)" ] || die "$tool landed $files files of $set"
  [ "$bytes" = "$(file_bytes "$src")" ] || die "$tool's $set holds $bytes bytes"
  python3 -c "print($end - $start)"
}

echo "making the trees: $nsmall x $small and $nlarge x $large of random data" >&2
make_tree "$work/small" "$nsmall" "$small_bytes"
make_tree "$work/large" "$nlarge" "$large_bytes"

case $via in
  local)
    echo "copy -r between two directories of one disk, $rounds rounds, alternating order, whole processes timed, page cache dropped before each"
    tools=(cp rsync tar xferbench xferbench-each) ;;
  ssh)
    echo "copy -r over SSH to an sshd on 127.0.0.1 (cipher $cipher), $rounds rounds, alternating order, whole processes timed, page cache dropped before each"
    tools=(scp rsync-ssh tar-ssh xferbench-ssh-1 xferbench-ssh-n xferbench-ssh-each) ;;
  tcp)
    echo "copy -r over TCP to serve on 127.0.0.1 (-P $streams) against SSH tools to an sshd on 127.0.0.1 (cipher $cipher), $rounds rounds, alternating order, whole processes timed, page cache dropped before each"
    tools=(scp rsync-ssh tar-ssh xferbench-tcp-n xferbench-tcp-each) ;;
esac
machine_line "$work" "$dst_root"
echo "xferbench $("$xferbench" --version | cut -d' ' -f2); $(cp --version | head -1); $(rsync --version | head -1); $(tar --version | head -1)${port:+; $(ssh -V 2>&1)}"
results=$work/results
: >"$results"
for set in small large; do
  for round in $(seq 1 "$rounds"); do
    order=("${tools[@]}")
    if [ $((round % 2)) -eq 0 ]; then
      order=()
      for ((i = ${#tools[@]} - 1; i >= 0; i--)); do order+=("${tools[i]}"); done
    fi
    line="$set, round $round:"
    for tool in "${order[@]}"; do
      secs=$(copy_with "$tool" "$set")
      echo "$set $tool $secs" >>"$results"
      line+=" $tool $(printf '%.2f' "$secs") s"
    done
    echo "$line"
  done
done

set +e
python3 - "$results" "$nsmall" "$small_bytes" "$nlarge" "$large_bytes" "$via" "$streams" <<'PY'
import statistics, sys
path, nsmall, small, nlarge, large = sys.argv[1], *map(int, sys.argv[2:6])
via, streams = sys.argv[6], sys.argv[7]
sets = {"small": (nsmall, nsmall * small), "large": (nlarge, nlarge * large)}
secs = {}
for line in open(path):
    s, tool, t = line.split()
    secs.setdefault((s, tool), []).append(float(t))
print("\nmedians (MB/s = 10^6 B/s):")
ok = True
if via != "local":
    theirs = ("scp", "rsync-ssh", "tar-ssh")
    ours = [t for t in ("xferbench-ssh-1", "xferbench-ssh-n", "xferbench-tcp-n") if any(k[1] == t for k in secs)]
    for s, (files, total) in sets.items():
        med = {tool: statistics.median(v) for (ss, tool), v in secs.items() if ss == s}
        print(f"  {s} ({files} files, {total/1e6:,.0f} MB):")
        for tool, t in med.items():
            print(f"    {tool:20} {total/t/1e6:9,.1f} MB/s {files/t:9,.0f} files/s")
        fastest = min(ours, key=lambda t: med[t])
        best = min(med[t] for t in theirs)
        best_tool = [t for t in theirs if med[t] == best][0]
        print(f"    {fastest} / rsync-ssh: {med['rsync-ssh']/med[fastest]:.2f}x; / the best ({best_tool}): {best/med[fastest]:.2f}x")
        need = 1.5 if s == "small" else 1.0
        against = med["rsync-ssh"] if s == "small" else best
        ok &= against / med[fastest] >= need
    print("PASS" if ok else "BELOW", "(needs small files >= 1.5x rsync over ssh, large >= 1.0x the best of scp, rsync, tar)")
    sys.exit(0 if ok else 3)
for s, (files, total) in sets.items():
    med = {tool: statistics.median(v) for (ss, tool), v in secs.items() if ss == s}
    parts = "  ".join(f"{tool} {total/t/1e6:,.1f} MB/s {files/t:,.0f} files/s" for tool, t in med.items())
    best = min(med[t] for t in ("cp", "rsync", "tar"))
    best_tool = [t for t in ("cp", "rsync", "tar") if med[t] == best][0]
    ratio = best / med["xferbench"]
    ok &= ratio >= 1.0
    print(f"  {s} ({files} files, {total/1e6:,.0f} MB): {parts}")
    print(f"     xferbench --fsync end / the best ({best_tool}): {ratio:.2f}x; "
          f"--fsync each / the best: {best / med['xferbench-each']:.2f}x")
print("PASS" if ok else "BELOW", "(needs xferbench --fsync end >= 1.0x the best of cp, rsync, tar)")
sys.exit(0 if ok else 3)
PY
status=$?
set -e
exit "$status"
