#!/usr/bin/env bash
# xferbench copy --via ssh against OpenSSH's scp, to the same OpenSSH sshd (started here on a
# free port of 127.0.0.1 with its own keys and config; no system sshd is used or touched), with
# the same cipher; and xferbench to its own embedded SSH server (serve --ssh-listen).
# Each round runs every scenario once, alternating which tool goes first, so drift hits both
# alike. Prints each round, then the medians and the ratios xferbench / scp.
#
# Both files live on tmpfs by default (SRC_DIR, DEST_DIR): the figure is the SSH path itself
# (cipher, channel windows, processes), not the disks, and the remote fsync costs nothing.
# scp is timed from start to exit; xferbench's figure is its own (-J), fsync included.
#
# usage: scripts/compare-ssh.sh [SIZE] [ROUNDS] [CIPHER]
#        defaults: 2G, 5 rounds, aes128-gcm@openssh.com
# environment: XFERBENCH  the binary to test (default: target/release/xferbench, built here)
#              SRC_DIR, DEST_DIR  where the file is read and written (default: /dev/shm)
#              STREAMS    xferbench's parallel connections for the -P row (default 4)
# Only 127.0.0.1 is ever used.
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh" || exit 1
size=${1:-2G}
rounds=${2:-5}
cipher=${3:-aes128-gcm@openssh.com}
streams=${STREAMS:-4}

need_posint ROUNDS "$rounds"
need_sshd

src_dir=$(mktemp -d "${SRC_DIR:-/dev/shm}/xferbench-compare-ssh-src.XXXXXX")
dest_dir=$(mktemp -d "${DEST_DIR:-/dev/shm}/xferbench-compare-ssh-dest.XXXXXX")
work=$(mktemp -d "${TMPDIR:-/tmp}/xferbench-compare-ssh.XXXXXX")
remove_on_exit "$work" "$src_dir" "$dest_dir"

use_xferbench

start_sshd "$work"

# xferbench's own SSH server, on another free port.
own_port=$(free_port)
"$xferbench" serve --help | grep -q -- --ssh-listen || die "this xferbench has no serve --ssh-listen"
"$xferbench" serve --listen 127.0.0.1:0 --root "$dest_dir" --ssh-listen "127.0.0.1:$own_port" \
  --authorized-keys "$work/authorized_keys" --host-key "$work/host_key" >"$work/serve.log" 2>&1 &
track_pid $!
wait_for_line "$work/serve.log" "ssh listening" 5 ||
  { echo "compare-ssh: serve's SSH server did not come up:" >&2; cat "$work/serve.log" >&2; exit 1; }
echo "[127.0.0.1]:$own_port $(cut -d' ' -f1,2 "$work/host_key.pub")" >>"$work/known_hosts"

source_file=$src_dir/random.img
"$xferbench" gen "$source_file" --size "$size" -q >/dev/null
bytes=$(stat -c %s "$source_file")

# clean_dest: no copy left in the destination before any run, so that every tool writes into
# the same amount of free memory (on tmpfs, a copy left behind makes the next writer fault in
# fresh pages and run up to 1.5x slower).
clean_dest() { rm -f "$dest_dir/scp.img" "$dest_dir/x.img" "$dest_dir/own.img"; }

# time_scp: seconds for one scp -O to the stock sshd.
time_scp() {
  local start end
  clean_dest
  start=$(date +%s.%N)
  scp -O -q -c "$cipher" -P "$port" "${ssh_opts[@]}" "$source_file" "$user@127.0.0.1:$dest_dir/scp.img"
  end=$(date +%s.%N)
  cmp -s "$source_file" "$dest_dir/scp.img" || { echo "compare-ssh: scp's copy differs" >&2; exit 1; }
  python3 -c "print($end - $start)"
}

# rate_xferbench PORT STREAMS REMOTE_PATH LANDED: MB/s of one copy, from its JSON report; the
# copy (LANDED, where REMOTE_PATH lands) is compared with the source.
rate_xferbench() {
  local json
  clean_dest
  json=$("$xferbench" copy "$source_file" "$user@127.0.0.1:$1:$3" --via ssh -P "$2" --cipher "$cipher" \
    --identity "$work/id" --known-hosts "$work/known_hosts" -F /dev/null -J 2>"$work/xferbench.err") ||
    { echo "compare-ssh: xferbench failed:" >&2; cat "$work/xferbench.err" >&2; exit 1; }
  cmp -s "$source_file" "$4" || { echo "compare-ssh: xferbench's copy to $1 differs" >&2; exit 1; }
  python3 -c 'import json,sys; m=json.loads(sys.argv[1])["measurement"]; print(m["bytes"]/m["secs"]/1e6)' "$json"
}

# to_sshd STREAMS / to_own STREAMS: one copy to the stock sshd / to serve's SSH server.
to_sshd() { rate_xferbench "$port" "$1" "$dest_dir/x.img" "$dest_dir/x.img"; }
to_own() { rate_xferbench "$own_port" "$1" own.img "$dest_dir/own.img"; }

echo "file: $size of random bytes on $(df --output=fstype "$src_dir" | tail -1) → $(df --output=fstype "$dest_dir" | tail -1); cipher $cipher; $rounds rounds, alternating"
machine_line "$src_dir" "$dest_dir"
echo "$(ssh -V 2>&1), $("$xferbench" --version)"
scenarios=("scp (OpenSSH, -O)" "xferbench -P 1 → sshd" "xferbench -P $streams → sshd" "xferbench -P 1 → own" "xferbench -P $streams → own")
# One untimed run of each first (like hyperfine's --warmup): sshd, the page cache and the CPU
# frequency settle before anything counts.
time_scp >/dev/null; to_sshd 1 >/dev/null; to_own "$streams" >/dev/null

declare -A results
for round in $(seq 1 "$rounds"); do
  run_scp() { local secs; secs=$(time_scp); python3 -c "print($bytes / $secs / 1e6)"; }
  if (( round % 2 )); then
    r0=$(run_scp); r1=$(to_sshd 1); r2=$(to_sshd "$streams"); r3=$(to_own 1); r4=$(to_own "$streams")
  else
    r4=$(to_own "$streams"); r3=$(to_own 1); r2=$(to_sshd "$streams"); r1=$(to_sshd 1); r0=$(run_scp)
  fi
  printf 'round %d: scp %.0f  -P1 %.0f  -P%d %.0f  own -P1 %.0f  own -P%d %.0f MB/s\n' "$round" "$r0" "$r1" "$streams" "$r2" "$r3" "$streams" "$r4"
  for i in 0 1 2 3 4; do v="r$i"; results[$i]+="${!v} "; done
done

python3 - "$bytes" "${results[0]}" "${results[1]}" "${results[2]}" "${results[3]}" "${results[4]}" "${scenarios[@]}" <<'EOF'
import statistics, sys
series = [[float(x) for x in s.split()] for s in sys.argv[2:7]]
names = sys.argv[7:12]
medians = [statistics.median(s) for s in series]
print(f"{'':28} {'MB/s':>8} {'Gb/s':>7}  ratio to scp")
for name, m in zip(names, medians):
    print(f"{name:28} {m:8.0f} {m * 8 / 1000:7.2f}  {m / medians[0]:.2f}")
print("medians; targets: xferbench -P 1 → sshd >= 1.3 × scp; xferbench -P N → own >= 3 × scp")
EOF
