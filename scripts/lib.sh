# shellcheck shell=bash
# Shared by the compare-*.sh scripts: source it first, do not run it. Sourcing it puts the script
# in strict mode (errexit, nounset, pipefail, inherit_errexit), sets `root` (the project's
# directory) and installs the one EXIT trap (see "Clean-up").
#
# machine_line [DIR...]: one line saying which machine a table of figures was measured on (CPU
# model, cores, memory, kernel, and for each DIR the file system and the disk under it), so a
# figure pasted into the README or a note can be read against the machine that made it.

set -euo pipefail
shopt -s inherit_errexit

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The disk under DIR: "nvme0n1 (Samsung SSD 970, NVMe)", "sda (..., SATA, rotational)", "vda (virtio)".
disk_of() {
  local dir=$1 dev name sys model kind
  dev=$(stat -c '%Hd:%Ld' "$dir" 2>/dev/null) || { echo "unknown"; return; }
  sys=$(readlink -f "/sys/dev/block/$dev" 2>/dev/null)
  if [ ! -e "$sys" ]; then
    echo "no block device ($(df --output=fstype "$dir" | tail -1))"
    return
  fi
  # A partition's disk is its parent directory.
  [ -e "$sys/partition" ] && sys=$(dirname "$sys")
  name=$(basename "$sys")
  model=$({ tr -s ' ' <"$sys/device/model"; } 2>/dev/null | sed 's/ *$//' || true)
  case $sys in
    */nvme/*) kind=NVMe ;;
    */virtio*) kind=virtio ;;
    */ata*) kind=SATA ;;
    */usb*) kind=USB ;;
    */virtual/*) kind=virtual ;;
    *) kind=other ;;
  esac
  [ "$(cat "$sys/queue/rotational" 2>/dev/null)" = 1 ] && kind="$kind, rotational"
  echo "$name (${model:+$model, }$kind, $(df --output=fstype "$dir" | tail -1))"
}

# shellcheck disable=SC2120 # DIR... is optional
machine_line() {
  local cpu cores mem disks="" dir
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
  cores=$(nproc)
  mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
  for dir in "$@"; do
    disks="$disks; $dir on $(disk_of "$dir")"
  done
  echo "machine: ${cpu:-unknown CPU}, $cores cores, $mem, kernel $(uname -r)$disks"
}

# --- Messages and checks ---------------------------------------------------------------------

# The script's name, the prefix of every message: compare-disk, compare-net, ...
prog=${0##*/}
prog=${prog%.sh}

# die MSG: "PROG: MSG" on stderr, exit 1 (a run that could not be made).
die() { echo "$prog: $*" >&2; exit 1; }

# usage_error MSG: "PROG: MSG" on stderr, exit 2 (bad arguments or environment).
usage_error() { echo "$prog: $*" >&2; exit 2; }

# need_posint NAME VALUE: exit 2 unless VALUE is a positive integer.
need_posint() {
  [[ $2 =~ ^[1-9][0-9]*$ ]] || usage_error "$1 must be a positive integer (got '$2')"
}

# need_size SIZE: print SIZE in bytes, read the way xferbench reads it (4G = 4 GiB, 4GB = 4x10^9
# bytes); exit 2 unless it parses and is above zero.
need_size() {
  local bytes
  bytes=$(python3 - "$1" <<'EOF'
import re, sys
m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(?:([kmgtp])(i|ib|b)?|b)?", sys.argv[1].strip().lower())
if not m:
    sys.exit(1)
power = " kmgtp".index(m.group(2)) if m.group(2) else 0
base = 1000 if m.group(3) == "b" else 1024
print(round(float(m.group(1)) * base ** power))
EOF
) || usage_error "SIZE must look like 4G, 512M or 8GB (got '$1')"
  [ "$bytes" -gt 0 ] || usage_error "SIZE must be above zero"
  echo "$bytes"
}

# need TOOL PACKAGES: exit 1, saying which Debian packages to install, unless TOOL is on the PATH.
need() {
  command -v "$1" >/dev/null || die "$1 is not installed (Debian: apt-get install $2)"
}

# need_python3: exit 1 unless python3 (which reads the tools' JSON) is on the PATH.
need_python3() {
  command -v python3 >/dev/null || die "python3 is needed to read the JSON"
}

# --- The binary under test -------------------------------------------------------------------

# build_release [CARGO_OPTION...]: build the release binary quietly (e.g. --features rdma) and
# set `xferbench` to it.
build_release() {
  cargo build --release --quiet "$@" --manifest-path "$root/Cargo.toml"
  xferbench=$root/target/release/xferbench
}

# use_xferbench [CARGO_OPTION...]: set `xferbench` to $XFERBENCH when given, else build_release;
# exit 1 unless it is executable.
# shellcheck disable=SC2120 # CARGO_OPTION... is optional
use_xferbench() {
  if [ -z "${XFERBENCH:-}" ]; then
    build_release "$@"
  else
    xferbench=$XFERBENCH
  fi
  [ -x "$xferbench" ] || die "$xferbench is not an executable"
}

# new_token: a fresh random token for serve --token and its clients.
new_token() { python3 -c 'import secrets; print(secrets.token_hex(16))'; }

# --- Servers ---------------------------------------------------------------------------------

# wait_for_line FILE PATTERN SECS [PID]: poll FILE every 0.1 s, for at most SECS s, until a line
# matches PATTERN (grep's basic regex), e.g. a server's "listening on". Returns 0 when one does,
# 2 as soon as PID (the server) has exited, 1 after SECS s. The caller says what went wrong.
wait_for_line() {
  local file=$1 pattern=$2 secs=$3 pid=${4:-}
  for _ in $(seq 1 $((secs * 10))); do
    if grep -q "$pattern" "$file" 2>/dev/null; then return 0; fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 2; fi
    sleep 0.1
  done
  # One last look: the line may have come during the last sleep.
  grep -q "$pattern" "$file" 2>/dev/null && return 0
  return 1
}

# wait_ready LOG PATTERN PID WHAT EXITED [SHOW...]: wait_for_line LOG PATTERN 10 PID; when no
# line came, "PROG: WHAT EXITED:" (PID has exited) or "PROG: WHAT was not ready after 10 s:" on
# stderr, then the files SHOW..., and exit 1.
wait_ready() {
  local log=$1 pattern=$2 pid=$3 what=$4 exited=$5 rc=0
  shift 5
  wait_for_line "$log" "$pattern" 10 "$pid" || rc=$?
  if [ "$rc" -eq 0 ]; then return 0; fi
  if [ "$rc" -eq 2 ]; then
    echo "$prog: $what $exited:" >&2
  else
    echo "$prog: $what was not ready after 10 s:" >&2
  fi
  cat "$@" >&2 2>/dev/null || true
  exit 1
}

# --- The lab ---------------------------------------------------------------------------------

# The names scripts/lab.sh gives its two namespaces (after LAB_PREFIX), and the address of the
# second, where the servers listen (in LAB_SUBNET).
# shellcheck disable=SC2034 # read by the scripts that source this file
ns_a=${LAB_PREFIX:-xfb}-a ns_b=${LAB_PREFIX:-xfb}-b lab_addr=${LAB_SUBNET:-10.77.0}.2

# lab_up [OPTION...]: (re)create the two namespaces of scripts/lab.sh, its output indented; the
# lab is taken down on exit.
lab_up() {
  _lab_up=1
  "$root/scripts/lab.sh" up "$@" | sed 's/^/  /'
}

# --- Clean-up --------------------------------------------------------------------------------
# One EXIT trap, and INT/TERM exit 130 through it. On exit, in this order:
#  1. every process given to track_pid gets SIGTERM; each then has 5 s to go before SIGKILL;
#  2. the commands given to cleanup_add run, the last added first;
#  3. the lab comes down, if lab_up brought it up;
#  4. the paths given to remove_on_exit are removed (rm -rf), in the order given.
# A step that fails does not stop the ones after it.

_pids=()
_cleanups=()
_removals=()
_lab_up=

# track_pid PID: stop PID (a server this script started) on exit.
track_pid() { _pids+=("$1"); }

# --- An OpenSSH sshd of the script's own ----------------------------------------------------

# need_sshd: sshd, ssh, scp, ssh-keygen and python3 are installed.
need_sshd() {
  local tool
  for tool in sshd scp ssh ssh-keygen python3; do
    [ -x "/usr/sbin/$tool" ] || need "$tool" "openssh-server openssh-client python3"
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_sshd WORK [ADDR]: an sshd on a free port of ADDR (default 127.0.0.1) with its own host
# key, client key (WORK/id) and known_hosts (WORK/known_hosts); no system sshd is used or touched.
# Sets port, user and ssh_opts (the options ssh, scp and rsync -e need to reach it); stopped on
# exit. The arrays sshd_wrap and ssh_wrap, when set, go before sshd and before the readiness
# probe's ssh (e.g. `ip netns exec NS taskset -c 1`).
sshd_wrap=()
ssh_wrap=()
start_sshd() {
  local work=$1 addr=${2:-127.0.0.1} sshd_bin
  sshd_bin=$(command -v sshd || echo /usr/sbin/sshd)
  ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
  ssh-keygen -q -t ed25519 -N '' -f "$work/id"
  cp "$work/id.pub" "$work/authorized_keys"
  [ "$(id -u)" = 0 ] && mkdir -p /run/sshd
  port=$(free_port)
  cat >"$work/sshd_config" <<EOF
ListenAddress $addr
Port $port
HostKey $work/host_key
AuthorizedKeysFile $work/authorized_keys
PidFile $work/sshd.pid
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
LogLevel ERROR
Subsystem sftp internal-sftp
EOF
  "${sshd_wrap[@]}" "$sshd_bin" -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
  track_pid $!
  echo "[$addr]:$port $(cut -d' ' -f1,2 "$work/host_key.pub")" >"$work/known_hosts"
  user=$(id -un)
  ssh_opts=(-F /dev/null -i "$work/id" -o UserKnownHostsFile="$work/known_hosts" -o StrictHostKeyChecking=yes -o BatchMode=yes)
  for _ in $(seq 1 50); do
    "${ssh_wrap[@]}" ssh "${ssh_opts[@]}" -p "$port" "$user@$addr" true 2>/dev/null && break
    sleep 0.2
  done
  "${ssh_wrap[@]}" ssh "${ssh_opts[@]}" -p "$port" "$user@$addr" true ||
    { echo "$prog: sshd did not come up:" >&2; cat "$work/sshd.log" >&2; exit 1; }
}

# cleanup_add COMMAND [ARG...]: run COMMAND ARG... on exit.
cleanup_add() {
  local cmd
  printf -v cmd '%q ' "$@"
  _cleanups+=("$cmd")
}

# remove_on_exit PATH...: rm -rf each PATH on exit.
remove_on_exit() { _removals+=("$@"); }

_on_exit() {
  local pid i path
  for pid in "${_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${_pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do eval "${_cleanups[i]}" || true; done
  if [ -n "$_lab_up" ]; then "$root/scripts/lab.sh" down || true; fi
  for path in "${_removals[@]}"; do
    if [ -n "$path" ]; then rm -rf "$path" || true; fi
  done
}
trap _on_exit EXIT
trap 'exit 130' INT TERM

# --- Figures ---------------------------------------------------------------------------------

# uncache FILE: write FILE back and drop it from the page cache, so the next read of it goes to
# the disk (only this file is touched).
uncache() {
  python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$1"
}

# giga VALUE: VALUE / 10^9 with two decimals (GB/s from bytes/s, Gb/s from bits/s).
giga() { python3 -c "print(f'{float(\"$1\")/1e9:.2f}')"; }

# mega VALUE: VALUE / 10^6, whole, with thousands separators (MB/s from bytes/s).
mega() { python3 -c "print(f'{float(\"$1\")/1e6:,.0f}')"; }
