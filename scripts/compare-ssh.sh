#!/usr/bin/env bash
# xferbench copy --via ssh against OpenSSH's scp, measured as a user feels it: each command timed
# as a whole process, from start to exit (login included), to the same OpenSSH sshd (started here
# on a free port of 127.0.0.1 with its own keys and config; no system sshd is used or touched),
# with the same cipher; and xferbench to its own embedded SSH server (serve --ssh-listen).
#
# Rows: the channel's own ceiling (`ssh HOST 'cat > /dev/null' < FILE`: one OpenSSH channel and
# nothing else), the channel writing the file (`ssh HOST 'cat > DEST' < FILE`: the least a
# one-channel copy to sshd must do, with no landing or check), scp -O, xferbench -P 1 and -P N to sshd and to serve's server, and the overwrite
# case (the destination exists: scp -O writes over it in place, xferbench --force lands a new
# file and renames it over the old one). For each: the median whole-process rate, xferbench's own
# figure beside it (its -J measurement: the copy alone, fsync included), the ratio to scp, the
# ratio to the channel's ceiling, and CPU seconds per GB on each end: here from the tool's own
# rusage (its children included), on the far side from the sshd listener's reaped children
# (/proc/PID/stat cutime + cstime: the session's sshd, its shell, scp -t, cat, dd) or serve's own
# utime + stime.
# Each round runs every row once, alternating the order, so drift hits all alike.
#
# Both files live on tmpfs by default (SRC_DIR, DEST_DIR): the figure is the SSH path itself
# (cipher, channel windows, processes), not the disks.
#
# PIN=1 (root, 2 cores or more): the two ends on cores of their own instead of sharing them all:
# every client (ssh, scp, xferbench) in namespace A of scripts/lab.sh on CPU 0, sshd and serve in
# namespace B on the last CPU, over the lab's veth pair (unshaped); taskset's affinity passes to
# every child (sshd's sessions, scp -t, dd). Each end then has one core: what one end costs shows
# as time, and what parallel connections could gain from a core is visible.
#
# usage: scripts/compare-ssh.sh [SIZE] [ROUNDS] [CIPHER]
#        defaults: 1G, 5 rounds, aes128-gcm@openssh.com
# environment: XFERBENCH  the binary to test (default: target/release/xferbench, built here)
#              SRC_DIR, DEST_DIR  where the file is read and written (default: /dev/shm)
#              STREAMS    xferbench's parallel connections for the -P rows (default 4)
#              PIN        1: the ends pinned to cores of their own in two namespaces (above)
# Only 127.0.0.1 is ever used, or with PIN=1 the lab's own addresses.
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh" || exit 1
size=${1:-1G}
rounds=${2:-5}
cipher=${3:-aes128-gcm@openssh.com}
streams=${STREAMS:-4}
pin=${PIN:-}

need_posint ROUNDS "$rounds"
need_sshd

host=127.0.0.1 client_pre=() server_pre=()
if [ -n "$pin" ]; then
  [ "$(id -u)" -eq 0 ] || usage_error "PIN=1 needs root (it makes network namespaces)"
  cores=$(nproc)
  [ "$cores" -ge 2 ] || usage_error "PIN=1 needs 2 cores or more (this machine has $cores)"
  need taskset util-linux
  # shellcheck disable=SC2119 # an unshaped lab: no options
  lab_up
  host=$lab_addr
  client_pre=(ip netns exec "$ns_a" taskset -c 0)
  server_pre=(ip netns exec "$ns_b" taskset -c $((cores - 1)))
fi
# The client's prefix as shell words ("" when none).
client_words=
if [ ${#client_pre[@]} -gt 0 ]; then client_words=$(printf '%q ' "${client_pre[@]}"); fi

src_dir=$(mktemp -d "${SRC_DIR:-/dev/shm}/xferbench-compare-ssh-src.XXXXXX")
dest_dir=$(mktemp -d "${DEST_DIR:-/dev/shm}/xferbench-compare-ssh-dest.XXXXXX")
work=$(mktemp -d "${TMPDIR:-/tmp}/xferbench-compare-ssh.XXXXXX")
remove_on_exit "$work" "$src_dir" "$dest_dir"

use_xferbench

sshd_wrap=("${server_pre[@]}") ssh_wrap=("${client_pre[@]}")
start_sshd "$work" "$host"
sshd_pid=$(cat "$work/sshd.pid")

# xferbench's own SSH server, on another free port.
own_port=$(free_port)
"$xferbench" serve --help | grep -q -- --ssh-listen || die "this xferbench has no serve --ssh-listen"
"${server_pre[@]}" "$xferbench" serve --listen 127.0.0.1:0 --root "$dest_dir" --ssh-listen "$host:$own_port" \
  --authorized-keys "$work/authorized_keys" --host-key "$work/host_key" >"$work/serve.log" 2>&1 &
serve_pid=$!
track_pid "$serve_pid"
wait_for_line "$work/serve.log" "ssh listening" 5 ||
  { echo "compare-ssh: serve's SSH server did not come up:" >&2; cat "$work/serve.log" >&2; exit 1; }
echo "[$host]:$own_port $(cut -d' ' -f1,2 "$work/host_key.pub")" >>"$work/known_hosts"

source_file=$src_dir/random.img
"$xferbench" gen "$source_file" --size "$size" -q >/dev/null
bytes=$(stat -c %s "$source_file")

# clean_dest: no copy left in the destination before a run, so that every tool writes into the
# same amount of free memory (on tmpfs, a copy left behind makes the next writer fault in fresh
# pages and run up to 1.5x slower). The overwrite rows put their old file back first.
clean_dest() { rm -f "$dest_dir"/*.img; }
old_dest() { clean_dest; cp "$source_file" "$dest_dir/$1"; }

# far_ticks: CPU clock ticks of the far side so far: the sshd listener's reaped children
# (cutime + cstime) and serve's own time (utime + stime).
far_ticks() {
  awk '{ print $16 + $17 }' "/proc/$sshd_pid/stat"
}
own_ticks() {
  awk '{ print $14 + $15 }' "/proc/$serve_pid/stat"
}

# timed OUT COMMAND: runs the shell COMMAND (stdout to OUT), prints "wall user sys" of it and its
# children.
timed() {
  python3 - "$@" <<'EOF'
import resource, subprocess, sys, time
out = open(sys.argv[1], "wb")
before = resource.getrusage(resource.RUSAGE_CHILDREN)
start = time.monotonic()
done = subprocess.run(["bash", "-c", sys.argv[2]], stdout=out)
wall = time.monotonic() - start
after = resource.getrusage(resource.RUSAGE_CHILDREN)
if done.returncode != 0:
    sys.exit(f"compare-ssh: `{sys.argv[2]}` exited {done.returncode}")
print(f"{wall} {after.ru_utime - before.ru_utime} {after.ru_stime - before.ru_stime}")
EOF
}

# measure ROW FAR CHECK COMMAND: one timed run; appends "wall here_cpu far_cpu own_mbps" to
# $work/ROW. FAR is far_ticks or own_ticks; CHECK the file the copy lands in ("" for none).
measure() {
  local row=$1 far=$2 check=$3 command=$4 before after times own=0 hz wall user sys
  hz=$(getconf CLK_TCK)
  before=$($far)
  times=$(timed "$work/out.json" "$command") || exit 1
  # The listener reaps the session's processes just after the client exits.
  for _ in $(seq 1 20); do
    sleep 0.05
    after=$($far)
    [ "$far" = own_ticks ] && break
    sleep 0.05
    [ "$after" = "$($far)" ] && break
  done
  if [ -n "$check" ]; then
    cmp -s "$source_file" "$check" || { echo "compare-ssh: $row: the copy differs" >&2; exit 1; }
  fi
  if [ -s "$work/out.json" ] && grep -q '"measurement"' "$work/out.json"; then
    own=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["measurement"]; print(m["bytes"]/m["secs"]/1e6)' "$work/out.json")
  fi
  read -r wall user sys <<<"$times"
  echo "$wall $(python3 -c "print($user + $sys)") $(python3 -c "print(($after - $before) / $hz)") $own" >>"$work/$row"
  echo "$wall"
}

q() { printf '%q ' "$@"; }
scp_to() { printf '%s' "$client_words"; q scp -O -q -c "$cipher" -P "$port" "${ssh_opts[@]}" "$source_file" "$user@$host:$1"; }
x_copy() { # x_copy PORT DEST STREAMS [--force]
  printf '%s' "$client_words"
  q "$xferbench" -q copy "$source_file" "$user@$host:$1:$2" --via ssh -P "$3" --cipher "$cipher" \
    --identity "$work/id" --known-hosts "$work/known_hosts" -F /dev/null -J "${@:4}"
  # Its loopback warning is known: kept out of the script's output.
  printf '2>>%q' "$work/xferbench.err"
}
ceiling_cmd="$client_words$(q ssh -c "$cipher" -p "$port" "${ssh_opts[@]}" "$user@$host" 'cat > /dev/null') < $(q "$source_file")"

# Each row: one run of its command.
row_ceiling() { clean_dest; measure ceiling far_ticks "" "$ceiling_cmd"; }
row_cat() { clean_dest; measure cat far_ticks "$dest_dir/cat.img" "$client_words$(q ssh -c "$cipher" -p "$port" "${ssh_opts[@]}" "$user@$host" "cat > $(q "$dest_dir/cat.img")") < $(q "$source_file")"; }
row_scp() { clean_dest; measure scp far_ticks "$dest_dir/scp.img" "$(scp_to "$dest_dir/scp.img")"; }
row_x1() { clean_dest; measure x1 far_ticks "$dest_dir/x.img" "$(x_copy "$port" "$dest_dir/x.img" 1)"; }
row_xn() { clean_dest; measure xn far_ticks "$dest_dir/x.img" "$(x_copy "$port" "$dest_dir/x.img" "$streams")"; }
row_own1() { clean_dest; measure own1 own_ticks "$dest_dir/own.img" "$(x_copy "$own_port" own.img 1)"; }
row_ownn() { clean_dest; measure ownn own_ticks "$dest_dir/own.img" "$(x_copy "$own_port" own.img "$streams")"; }
row_scp_over() { old_dest scp.img; measure scp_over far_ticks "$dest_dir/scp.img" "$(scp_to "$dest_dir/scp.img")"; }
row_x1_over() { old_dest x.img; measure x1_over far_ticks "$dest_dir/x.img" "$(x_copy "$port" "$dest_dir/x.img" 1 --force)"; }

rows=(ceiling cat scp x1 xn own1 ownn scp_over x1_over)
echo "file: $size of random bytes on $(df --output=fstype "$src_dir" | tail -1) → $(df --output=fstype "$dest_dir" | tail -1); cipher $cipher; $rounds rounds, alternating; every figure a whole process, start to exit"
machine_line "$src_dir" "$dest_dir"
if [ -n "$pin" ]; then
  echo "pinned: clients on CPU 0 in namespace $ns_a, sshd and serve on CPU $((cores - 1)) in namespace $ns_b, over a veth pair ($host)"
fi
echo "$(ssh -V 2>&1), $("$xferbench" --version)"
# One untimed run of each first (like hyperfine's --warmup): sshd, the page cache and the CPU
# frequency settle before anything counts.
for row in "${rows[@]}"; do "row_$row" >/dev/null; : >"$work/$row"; done

for round in $(seq 1 "$rounds"); do
  order=("${rows[@]}")
  if (( round % 2 == 0 )); then
    order=(); for ((i = ${#rows[@]} - 1; i >= 0; i--)); do order+=("${rows[i]}"); done
  fi
  line="round $round:"
  for row in "${order[@]}"; do line+=" $row $(printf '%.2f' "$("row_$row")") s"; done
  echo "$line"
done

python3 - "$work" "$bytes" "$streams" <<'EOF'
import statistics, sys
work, size, streams = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = {
    "ceiling": "ssh 'cat > /dev/null' (ceiling)",
    "cat": "ssh 'cat > FILE'",
    "scp": "scp -O",
    "x1": "xferbench -P 1 → sshd",
    "xn": f"xferbench -P {streams} → sshd",
    "own1": "xferbench -P 1 → own",
    "ownn": f"xferbench -P {streams} → own",
    "scp_over": "scp -O, over an old file",
    "x1_over": "xferbench -P 1 --force, over",
}
rows = {}
for row in names:
    runs = [list(map(float, line.split())) for line in open(f"{work}/{row}") if line.strip()]
    rows[row] = {
        "wall": statistics.median(r[0] for r in runs),
        "here": statistics.median(r[1] for r in runs),
        "far": statistics.median(r[2] for r in runs),
        "own": statistics.median(r[3] for r in runs),
    }
gb = size / 1e9
scp = rows["scp"]["wall"]
ceiling = rows["ceiling"]["wall"]
print(f"{'':34} {'whole':>7} {'MB/s':>6} {'own MB/s':>9} {'÷ scp':>6} {'÷ ceil':>7} {'CPU s/GB here':>14} {'far':>6}")
for row, name in names.items():
    r = rows[row]
    mbps = size / r["wall"] / 1e6
    own = f"{r['own']:.0f}" if r["own"] else "-"
    against = rows["scp_over"]["wall"] if row.endswith("_over") else scp
    print(f"{name:34} {r['wall']:6.2f}s {mbps:6.0f} {own:>9} {against / r['wall']:6.2f} {ceiling / r['wall']:7.2f} {r['here'] / gb:14.2f} {r['far'] / gb:6.2f}")
print("medians of whole processes; ÷ scp: scp's time over the row's (the overwrite rows against scp's overwrite);")
print("÷ ceil: the channel's time over the row's; CPU s/GB here: the command and its children; far: sshd's session or serve")
print("targets: -P 1 → sshd >= 1.3 × scp and >= 0.9 × ceiling; client CPU <= 0.6 × scp's; -P N → own >= 3 × scp")
EOF
