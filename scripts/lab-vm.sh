#!/usr/bin/env bash
# A small lab VM: a real soft-RoCE device (rdma_rxe) for the RDMA tests on machines without RDMA
# hardware or an RDMA-capable kernel, and on demand a real SMB or NFS share (a NAS in a network
# namespace of the guest) for machines whose kernel has no CIFS/NFS client. QEMU (TCG, no KVM
# needed) boots Debian's 6.1 kernel with a tiny busybox initramfs that mounts this machine's /
# read-only over 9p under a tmpfs overlay and switches into it, so the host's rdma-core, perftest,
# samba, nfs-utils and freshly built binaries run in the guest. The guest has no network to the
# outside: a dummy device for rxe, and with --nas a veth pair to the NAS's namespace.
# (scripts/rdma-vm.sh is the old name; it runs this script.)
#
# usage: scripts/lab-vm.sh setup
#        scripts/lab-vm.sh check [--nas]
#        scripts/lab-vm.sh run [--mtu N] [--share DIR]... [--env NAME=VALUE]...
#                              [--nas smb|nfs [--nas-size SIZE] [--nas-export-opts OPTS]
#                               [--nas-mount-opts OPTS] [--nas-disk-delay MS]] -- COMMAND [ARG]...
#
#   setup   installs what is missing (apt-get, needs root): kmod, iproute2, ibverbs-utils,
#           ibverbs-providers, perftest, QEMU's libraries, and for --nas samba, cifs-utils,
#           nfs-kernel-server, nfs-common, e2fsprogs (with a policy-rc.d that starts no service
#           here; a daemon the install started anyway is stopped); downloads Debian's 6.1 kernel,
#           busybox-static and (unless a qemu-system-x86_64 is on PATH) QEMU into the cache,
#           unpacks them there and builds the initramfs. QEMU is unpacked rather than installed
#           because Debian 12's qemu-system-x86 removes a newer (backported) qemu-utils.
#           Does nothing slow when everything is cached. Delete the cache to start over.
#   check   says whether this machine can run the VM now (exit 0) or needs `setup` (exit 1);
#           with --nas, whether it can also run `run --nas` (the NAS packages are installed).
#   run     boots the VM (running `setup` first if needed) and runs COMMAND in it as root, in the
#           current directory (the same path in the guest), with rxe0 on dummy0 up, address
#           192.0.2.1/24, `ulimit -l unlimited`. COMMAND's stdout and stderr come out here
#           separately; the script exits with COMMAND's exit status.
#     --mtu N         MTU of dummy0 (default 1500; 9000 for jumbo frames): rxe's path MTU follows
#     --share DIR     a host directory the guest can write, mounted at the same path (repeatable);
#                     everything else is read-only in the guest (writes land in a tmpfs and vanish)
#     --env NAME=VAL  set a variable for COMMAND (repeatable); the guest starts with PATH, HOME,
#                     TERM=dumb, and RDMA_VM_DEV=rxe0 RDMA_VM_NETDEV=dummy0 RDMA_VM_ADDR=192.0.2.1
#                     RDMA_VM_MTU=N
#     --nas smb|nfs   before COMMAND, bring up a NAS and mount its share: network namespace `nas`
#                     joined by a veth pair (lab-nas 198.51.100.1/24 here, lab-nas-srv
#                     198.51.100.2/24 in `nas`); the export is ext4 on a loop image in a tmpfs,
#                     mounted at /srv/nas. smb: smbd in `nas` (SMB3 only, bound to lab-nas-srv),
#                     share `share`, guest-writable, files owned by root; mounted with
#                     `mount -t cifs //198.51.100.2/share /mnt/nas -o guest,vers=3.1.1,cache=none`.
#                     nfs: rpcbind, nfsdcld (so no grace period), rpc.nfsd (NFSv4 only, 8 threads,
#                     grace and lease 10 s), exportfs and rpc.mountd in `nas`, /srv/nas exported
#                     `rw,no_root_squash,no_subtree_check,fsid=0,sync`; mounted with
#                     `mount -t nfs4 198.51.100.2:/ /mnt/nas -o vers=4.2`. COMMAND then sees
#                     LAB_NAS_KIND (smb|nfs), LAB_NAS_MNT=/mnt/nas (the client's mount),
#                     LAB_NAS_ADDR=198.51.100.2, LAB_NAS_EXPORT=/srv/nas (the same files, NAS
#                     side: `ip netns exec nas xferbench serve --root $LAB_NAS_EXPORT`),
#                     LAB_NAS_NETNS=nas, LAB_NAS_VETH=lab-nas (the client's end: `tc qdisc add dev
#                     $LAB_NAS_VETH root tbf ...` shapes what the client sends, i.e. writes),
#                     LAB_NAS_CLIENT_ADDR=198.51.100.1, LAB_NAS_SOURCE (what was mounted),
#                     LAB_NAS_LOG (the server's log file). Without --nas none of it starts.
#     --nas-size SIZE         size of the export's file system (default 512M; memory of the
#                             guest, so raise RDMA_VM_MEM with it)
#     --nas-export-opts OPTS  nfs: the export's options, replacing the default (e.g. with async
#                             for sync); smb: share parameters added to the share's section,
#                             `;` between them (e.g. 'strict sync = no;aio write size = 0')
#     --nas-mount-opts OPTS   options appended to the mount's defaults; a later option wins
#                             (e.g. cache=strict, vers=3.0, rsize=65536, nconnect=4)
#     --nas-disk-delay MS     the export's disk takes MS ms more for each write (dm-delay over
#                             the loop device): a medium a stable write must wait for, where
#                             tmpfs alone makes a sync export nearly as fast as an async one
#
# Environment: RDMA_VM_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/xferbench-rdma-vm),
# RDMA_VM_MEM (guest memory, default 2G), RDMA_VM_SMP (vCPUs, default 2), RDMA_VM_TIMEOUT
# (seconds for the whole VM, default 600), RDMA_VM_QEMU (a qemu-system-x86_64 to use),
# RDMA_VM_CPU (QEMU's -cpu, default x86-64-v2 level: qemu64 with SSSE3, SSE4.x, POPCNT, CX16;
# "max" for binaries that need AVX, at half the RDMA speed),
# RDMA_VM_VERBOSE=1 (show the guest's console, kernel messages included, on stderr).
# Exit status of `run`: COMMAND's; 1 when the VM could not run it (a one-line reason on stderr,
# e.g. `lab-vm: smbd did not start: <its log's tail>`).
set -euo pipefail

cache=${RDMA_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xferbench-rdma-vm}
mem=${RDMA_VM_MEM:-2G}
smp=${RDMA_VM_SMP:-2}
vm_timeout=${RDMA_VM_TIMEOUT:-600}
verbose=${RDMA_VM_VERBOSE:-0}
# x86-64-v2 without PCLMULQDQ and AVX: under TCG the kernel's CLMUL CRC (rxe's ICRC) and glibc's
# AVX copies are emulated slowly; ib_write_bw is about twice as fast as with -cpu max.
cpu=${RDMA_VM_CPU:-qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16}
guest_addr=192.0.2.1

# Host packages whose programs the guest runs (it runs the host's /): modprobe (kmod), ip and rdma
# (iproute2), ibv_devices/ibv_devinfo (ibverbs-utils), the rxe provider (ibverbs-providers) and
# ib_write_bw and friends (perftest).
host_pkgs=(kmod iproute2 ibverbs-utils ibverbs-providers perftest)
# And for --nas: smbd (samba), mount.cifs (cifs-utils), rpc.nfsd, exportfs and rpc.mountd
# (nfs-kernel-server), rpcbind and mount.nfs4 (nfs-common), mkfs.ext4 and losetup (e2fsprogs),
# dmsetup for --nas-disk-delay.
nas_pkgs=(samba cifs-utils nfs-kernel-server nfs-common e2fsprogs dmsetup)
# Daemons of those packages that an install may start on this machine; setup stops new ones.
nas_daemons=(smbd nmbd samba-bgqd samba-dcerpcd winbindd rpcbind rpc.mountd rpc.statd rpc.idmapd
  rpc.gssd rpc.svcgssd nfsdcld blkmapd)
# The NAS's network: the client's end of the veth pair, then the NAS's end in namespace `nas`.
nas_client_addr=198.51.100.1
nas_addr=198.51.100.2
# Modules the initramfs loads (with their dependencies from modules.dep) to mount the host's / .
initramfs_mods=(virtio_pci 9pnet_virtio 9p overlay)

die() { echo "lab-vm: $*" >&2; exit 1; }
note() { echo "lab-vm: $*" >&2; }
usage() {
  echo "usage: scripts/lab-vm.sh setup | check [--nas] | run [--mtu N] [--share DIR]... [--env NAME=VALUE]... [--nas smb|nfs [--nas-size SIZE] [--nas-export-opts OPTS] [--nas-mount-opts OPTS] [--nas-disk-delay MS]] -- COMMAND [ARG]..." >&2
  exit 2
}

pkg_installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

# The packages `run` needs that are not installed; with `nas`, those of `run --nas` too.
missing_host_pkgs() {
  local p pkgs=("${host_pkgs[@]}")
  [ "${1:-}" != nas ] || pkgs+=("${nas_pkgs[@]}")
  for p in "${pkgs[@]}"; do pkg_installed "$p" || echo "$p"; done
}

# The qemu to run: RDMA_VM_QEMU, one on PATH, or the one unpacked into the cache (with -L for its
# firmware). Prints nothing when there is none.
qemu_bin() {
  if [ -n "${RDMA_VM_QEMU:-}" ]; then
    echo "$RDMA_VM_QEMU"
  elif command -v qemu-system-x86_64 >/dev/null; then
    command -v qemu-system-x86_64
  elif [ -x "$cache/qemu/usr/bin/qemu-system-x86_64" ] && [ -e "$cache/qemu/.complete" ]; then
    echo "$cache/qemu/usr/bin/qemu-system-x86_64"
  fi
}

# Runs a qemu; the one from the cache loads its modules from the cache too.
qemu_env() {
  case $1 in
    "$cache"/qemu/*) QEMU_MODULE_DIR=$(echo "$cache"/qemu/usr/lib/*/qemu) "$@" ;;
    *) "$@" ;;
  esac
}

kver() { cat "$cache/kernel/.kver" 2>/dev/null || true; }

kernel_ready() {
  local k
  k=$(kver)
  [ -n "$k" ] && [ -f "$cache/kernel/boot/vmlinuz-$k" ] && [ -f "$cache/kernel/lib/modules/$k/modules.dep" ] &&
    [ -f "$cache/initramfs-$k.cpio.gz" ]
}

# Can `run` (with `nas`: `run --nas`) start right away? Prints why not, one reason a line.
not_ready() {
  local p
  [ -n "$(qemu_bin)" ] || echo "no qemu-system-x86_64 (on PATH or in the cache)"
  kernel_ready || echo "no kernel and initramfs in the cache"
  for p in $(missing_host_pkgs "${1:-}"); do echo "package $p is not installed"; done
  # A qemu from the cache needs its libraries installed too.
  local q
  q=$(qemu_bin)
  if [ -n "$q" ] && ! qemu_env "$q" --version >/dev/null 2>&1; then echo "$q does not start (missing libraries?)"; fi
}

# apt-get download into $cache/debs; prints the .deb's path. As root apt cannot sandbox the
# download into a directory _apt cannot enter, and says so; that is expected here.
download_deb() {
  local pkg=$1 deb
  mkdir -p "$cache/debs"
  (cd "$cache/debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) ||
    die "apt-get download $pkg failed (run as root so setup can run apt-get update first?)"
  deb=$(ls -t "$cache/debs/${pkg}_"*.deb 2>/dev/null | head -n 1)
  [ -n "$deb" ] || die "apt-get download $pkg left no .deb in $cache/debs"
  echo "$deb"
}

apt_updated=0
apt_update() {
  if [ "$apt_updated" = 0 ] && [ "$(id -u)" -eq 0 ]; then
    note "apt-get update"
    apt-get update -q >/dev/null || die "apt-get update failed"
    apt_updated=1
  fi
}

apt_install() {
  [ $# -gt 0 ] || return 0
  [ "$(id -u)" -eq 0 ] || die "setup must install $* and is not root: sudo scripts/lab-vm.sh setup (or apt-get install $* yourself)"
  apt_update
  note "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2 ||
    die "apt-get install $* failed"
}

daemon_pids() {
  local d
  command -v pgrep >/dev/null || return 0
  for d in "${nas_daemons[@]}"; do pgrep -x "$d" || true; done
}

# apt_install with no service started: a policy-rc.d that says 101 ("action forbidden") keeps
# invoke-rc.d and deb-systemd-invoke from starting smbd, rpcbind and the like here (one the machine
# already has is left as it is; ours goes right after). Should a daemon start anyway, the ones
# that were not running before are stopped: the guest starts its own.
apt_install_no_services() {
  [ $# -gt 0 ] || return 0
  local policy=/usr/sbin/policy-rc.d ours='' before pid
  before=$(daemon_pids)
  if [ "$(id -u)" -eq 0 ] && [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from xferbench scripts/lab-vm.sh setup: start no services\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    ours=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt_install "$@"
  if [ -n "$ours" ]; then
    rm -f "$policy"
    trap - EXIT
  fi
  for pid in $(daemon_pids); do
    if ! grep -qx "$pid" <<<"$before"; then
      note "stopping $(cat "/proc/$pid/comm" 2>/dev/null || echo daemon) (pid $pid), started by the install"
      kill "$pid" 2>/dev/null || true
    fi
  done
}

# QEMU 7.2 unpacked from Debian's packages, its firmware beside it, its libraries installed.
setup_qemu() {
  [ -z "$(qemu_bin)" ] || return 0
  apt_update
  local deb libs=() dep name
  rm -rf "$cache/qemu"
  mkdir -p "$cache/qemu"
  # qemu-system-common has the TCG accelerator module (accel-tcg-x86_64.so); only that is used.
  for name in qemu-system-x86 qemu-system-common qemu-system-data seabios; do
    deb=$(download_deb "$name")
    dpkg-deb -x "$deb" "$cache/qemu"
    if [ "$name" = qemu-system-x86 ]; then
      # Depends: "a (>= 1), b | c, ..." -> the first name of each, less QEMU's own packages.
      while read -r dep; do
        case $dep in qemu-*|seabios|ipxe-qemu|'') ;; *) pkg_installed "$dep" || libs+=("$dep") ;; esac
      done < <(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/:any//; s/[[:space:]]//g')
    fi
  done
  apt_install "${libs[@]}"
  qemu_env "$cache/qemu/usr/bin/qemu-system-x86_64" --version >/dev/null ||
    die "the unpacked QEMU ($cache/qemu/usr/bin/qemu-system-x86_64) does not start"
  touch "$cache/qemu/.complete"
}

# Module paths (relative to lib/modules/KVER) for the named modules, dependencies first.
module_closure() {
  local dir=$1 m line path deps d
  shift
  declare -A seen=()
  for m in "$@"; do
    # modules.dep names files; a module's name has - and _ interchangeable.
    line=$(awk -v m="${m//-/_}" '{ f = $1; sub(/:$/, "", f); n = f; sub(/.*\//, "", n); sub(/\.ko(\.[a-z]+)?$/, "", n); gsub(/-/, "_", n); if (n == m) { print; exit } }' "$dir/modules.dep")
    if [ -z "$line" ]; then
      grep -q "/${m}.ko\$" "$dir/modules.builtin" 2>/dev/null && continue
      grep -q "/${m//_/-}.ko\$" "$dir/modules.builtin" 2>/dev/null && continue
      die "module $m is neither in modules.dep nor built in"
    fi
    path=${line%%:*}
    deps=${line#*:}
    # modules.dep lists every dependency, the ones loaded first last.
    for d in $(echo $deps | tr ' ' '\n' | tac) "$path"; do
      [ -n "${seen[$d]:-}" ] && continue
      seen[$d]=1
      echo "$d"
    done
  done
}

build_initramfs() {
  local k=$1 moddir=$cache/kernel/lib/modules/$1 stage bb m base out
  bb=$cache/busybox/bin/busybox
  stage=$cache/initramfs.d
  rm -rf "$stage"
  mkdir -p "$stage"/{bin,dev,proc,sys,mnt,lower,rw,newroot,modules}
  cp "$bb" "$stage/bin/busybox"
  : >"$stage/modules.list"
  for m in $(module_closure "$moddir" "${initramfs_mods[@]}"); do
    base=${m##*/}
    case $base in
      *.ko) cp "$moddir/$m" "$stage/modules/$base" ;;
      *.ko.xz) "$bb" xz -dc "$moddir/$m" >"$stage/modules/${base%.xz}"; base=${base%.xz} ;;
      *.ko.zst) zstd -qdc "$moddir/$m" >"$stage/modules/${base%.zst}"; base=${base%.zst} ;;
      *) die "unknown module file $m" ;;
    esac
    echo "$base" >>"$stage/modules.list"
  done
  cat >"$stage/init" <<'EOF'
#!/bin/busybox sh
# lab-vm initramfs: mount the host's / (9p tag xfbroot, read-only) under a tmpfs overlay, the
# run directory (tag xfbrun) at /run/xferbench-vm, and hand over to its guest.sh.
/bin/busybox --install -s /bin
export PATH=/bin
fail() { echo "lab-vm init: $*"; echo "lab-vm init: $*" >/dev/ttyS2; poweroff -f; }
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
while read -r m; do insmod "/modules/$m" || fail "insmod $m failed"; done </modules.list
o=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$o,ro" xfbroot /lower || fail "cannot mount the host's / (9p xfbroot)"
mount -t tmpfs -o mode=755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot ||
  fail "cannot mount the overlay"
mount -t tmpfs -o mode=755 tmpfs /newroot/run
mkdir -p /newroot/run/xferbench-vm
mount -t 9p -o "$o" xfbrun /newroot/run/xferbench-vm || fail "cannot mount the run directory (9p xfbrun)"
[ -f /newroot/run/xferbench-vm/guest.sh ] || fail "no guest.sh in the run directory"
mount -o move /dev /newroot/dev
mount -o move /proc /newroot/proc
mount -o move /sys /newroot/sys
exec switch_root /newroot /bin/bash /run/xferbench-vm/guest.sh
EOF
  chmod 755 "$stage/init"
  out=$cache/initramfs-$k.cpio.gz
  (cd "$stage" && find . | "$bb" cpio -o -H newc 2>/dev/null) | gzip -9 >"$out.tmp"
  mv "$out.tmp" "$out"
  rm -rf "$stage"
}

setup_kernel() {
  kernel_ready && return 0
  local pkg k deb
  apt_update
  # linux-image-amd64 depends on the current linux-image-6.1.0-N-amd64.
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][0-9.]*-[0-9]*-amd64\)$/\1/p' | head -n 1)
  [ -n "$pkg" ] || die "apt-cache knows no linux-image-amd64 depending on a linux-image-*-amd64 (run apt-get update?)"
  k=${pkg#linux-image-}
  note "kernel $pkg"
  deb=$(download_deb "$pkg")
  rm -rf "$cache/kernel"
  mkdir -p "$cache/kernel"
  dpkg-deb -x "$deb" "$cache/kernel"
  # Merged-/usr packages put the modules under usr/lib.
  if [ ! -d "$cache/kernel/lib/modules/$k" ] && [ -d "$cache/kernel/usr/lib/modules/$k" ]; then
    mkdir -p "$cache/kernel/lib"
    ln -s ../usr/lib/modules "$cache/kernel/lib/modules"
  fi
  [ -f "$cache/kernel/boot/vmlinuz-$k" ] || die "$deb has no boot/vmlinuz-$k"
  command -v depmod >/dev/null || [ -x /sbin/depmod ] || die "depmod (kmod) is not installed"
  PATH=$PATH:/sbin:/usr/sbin depmod -b "$cache/kernel" "$k"
  if [ ! -x "$cache/busybox/bin/busybox" ]; then
    deb=$(download_deb busybox-static)
    rm -rf "$cache/busybox"
    dpkg-deb -x "$deb" "$cache/busybox"
  fi
  build_initramfs "$k"
  echo "$k" >"$cache/kernel/.kver"
}

cmd_setup() {
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
    die "setup needs apt-get and dpkg-deb (a Debian 12 machine)"
  mkdir -p "$cache"
  local start=$SECONDS missing
  missing=$(missing_host_pkgs nas | tr '\n' ' ')
  # shellcheck disable=SC2086
  apt_install_no_services $missing
  setup_qemu
  setup_kernel
  rm -rf "$cache/debs"
  [ -z "$(not_ready nas)" ] || die "setup finished but: $(not_ready nas | paste -sd';' | sed 's/;/; /g')"
  note "ready: kernel $(kver), $(qemu_env "$(qemu_bin)" --version | head -n 1), cache $cache ($((SECONDS - start)) s)"
}

cmd_check() {
  local q reasons nas=''
  case ${1:-} in --nas) nas=nas ;; '') ;; *) usage ;; esac
  q=$(qemu_bin)
  echo "cache:     $cache"
  if [ -n "$q" ]; then echo "qemu:      $q ($(qemu_env "$q" --version 2>/dev/null | head -n 1 || echo 'does not start'))"; else echo "qemu:      missing"; fi
  if kernel_ready; then echo "kernel:    $(kver) (initramfs built)"; else echo "kernel:    not cached"; fi
  echo "packages:  $(for p in "${host_pkgs[@]}"; do if pkg_installed "$p"; then printf '%s ' "$p"; else printf '%s(missing) ' "$p"; fi; done)"
  echo "for --nas: $(for p in "${nas_pkgs[@]}"; do if pkg_installed "$p"; then printf '%s ' "$p"; else printf '%s(missing) ' "$p"; fi; done)"
  echo "accel:     tcg (software emulation; /dev/kvm is not used)"
  reasons=$(not_ready "$nas")
  if [ -z "$reasons" ] && [ -n "$nas" ]; then
    echo "ready:     yes, with --nas (scripts/lab-vm.sh run --nas nfs -- df -h /mnt/nas)"
  elif [ -z "$reasons" ]; then
    echo "ready:     yes (scripts/lab-vm.sh run -- ibv_devinfo -d rxe0)"
  else
    echo "ready:     no, run scripts/lab-vm.sh setup (as root): $(paste -sd';' <<<"$reasons" | sed 's/;/; /g')"
    return 1
  fi
}

# PID 1 of the guest, after switch_root into the overlay of the host's /. Writes the command's
# exit status to /run/xferbench-vm/status (the host's run directory) and powers off.
guest_script() {
  cat <<'EOF'
#!/bin/bash
# lab-vm guest: PID 1 after switch_root (written by scripts/lab-vm.sh for one run).
R=/run/xferbench-vm
exec </dev/null
# ttyS1 is the host's stdout, ttyS2 its stderr: raw, so no \n becomes \r\n.
stty -F /dev/ttyS1 raw -echo 2>/dev/null
stty -F /dev/ttyS2 raw -echo 2>/dev/null
exec >/dev/ttyS1 2>/dev/ttyS2
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb
off() { sync; echo o >/proc/sysrq-trigger; sleep 30 2>/dev/null; }
fail() { echo "lab-vm guest: $*" >&2; echo setup-failed >"$R/status"; off; }
. "$R/guest.env" || fail "cannot read guest.env"

# --nas: one line naming what failed, then the command does not run.
nas_fail() { echo "lab-vm: $*" >&2; echo nas-failed >"$R/status"; off; }
# The last lines of a log, on one line.
tail1() { tail -n "${2:-3}" "$1" 2>/dev/null | tr -s '\n\t' '  ' | cut -c 1-400; }
# Runs "$@" until it succeeds: at most TRIES times and SECS seconds, a pause of 0.2 s between.
retry() {
  local tries=$1 end=$((SECONDS + $2)) i
  shift 2
  for ((i = 0; i < tries; i++)); do
    "$@" && return 0
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.2
  done
  return 1
}
# Notes in the setup log how long the NAS has taken so far.
stamp() { awk -v a="$t0" -v b="$EPOCHREALTIME" -v w="$*" 'BEGIN { printf "+%.2f s %s\n", b - a, w }' >>"$log"; }
listening() { ip netns exec nas ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
# Prints the device the export's ext4 goes on: $1, or with NAS_DISK_DELAY a dm-delay over it
# whose writes each wait that many ms (reads do not).
slow_disk() {
  [ -n "$NAS_DISK_DELAY" ] || { echo "$1"; return 0; }
  modprobe dm_delay 2>>"$log" &&
    dmsetup create --noudevsync lab-nas-slow \
      --table "0 $(blockdev --getsz "$1") delay $1 0 0 $1 0 $NAS_DISK_DELAY" >>"$log" 2>&1 &&
    dmsetup mknodes lab-nas-slow >>"$log" 2>&1 && echo /dev/mapper/lab-nas-slow
}
# A NAS in network namespace `nas`, its share mounted at $NAS_MNT here.
nas_up() {
  local t0=$EPOCHREALTIME m W=/run/lab-nas dev src opts log t i
  local exp=/srv/nas veth=lab-nas veth_srv=lab-nas-srv mods=(veth loop ext4 sch_tbf)
  mkdir -p "$W" "$exp" "$NAS_MNT"
  log=$W/setup.log
  case $NAS_KIND in
    smb) mods+=(cifs) ;;
    nfs) mods+=(nfsd nfsv4) ;;
  esac
  for m in "${mods[@]}"; do modprobe "$m" 2>>"$log" || nas_fail "modprobe $m failed: $(tail1 "$log" 1)"; done
  stamp "modules loaded"
  { ip netns add nas && ip link add "$veth" type veth peer name "$veth_srv" netns nas &&
    ip addr add "$NAS_CLIENT_ADDR/24" dev "$veth" && ip link set "$veth" up &&
    ip -n nas link set lo up && ip -n nas addr add "$NAS_ADDR/24" dev "$veth_srv" &&
    ip -n nas link set "$veth_srv" up; } 2>>"$log" || nas_fail "cannot set up the veth pair to namespace nas: $(tail1 "$log")"
  stamp "veth up"
  # The export: ext4 on a loop image in a tmpfs of its own (the guest's memory, NAS_SIZE at most).
  mkdir -p "$W/disk"
  mount -t tmpfs -o "size=$NAS_BYTES,mode=700" tmpfs "$W/disk" && truncate -s "$NAS_BYTES" "$W/disk/nas.img" &&
    mkfs.ext4 -q -F -m 0 -E lazy_itable_init=0,lazy_journal_init=0 -L lab-nas "$W/disk/nas.img" >>"$log" 2>&1 &&
    dev=$(losetup -f --show "$W/disk/nas.img" 2>>"$log") && dev=$(slow_disk "$dev") &&
    mount -t ext4 "$dev" "$exp" 2>>"$log" &&
    chmod 1777 "$exp" || nas_fail "cannot make the export's ext4 on a loop image: $(tail1 "$log")"
  stamp "export mounted"
  case $NAS_KIND in
    smb)
      src=//$NAS_ADDR/share
      opts=guest,vers=3.1.1,cache=none
      mkdir -p "$W/smb"/{private,lock,state,cache,run,ncalrpc}
      {
        printf '%s\n' '[global]' 'server role = standalone server' 'bind interfaces only = yes' \
          "interfaces = $veth_srv" 'smb ports = 445' 'disable netbios = yes' 'server min protocol = SMB3' \
          'map to guest = Bad User' 'load printers = no' 'printing = bsd' 'printcap name = /dev/null' \
          'disable spoolss = yes' 'usershare max shares = 0' "private dir = $W/smb/private" \
          "lock directory = $W/smb/lock" "state directory = $W/smb/state" "cache directory = $W/smb/cache" \
          "pid directory = $W/smb/run" "ncalrpc dir = $W/smb/ncalrpc" 'logging = file' \
          "log file = $W/smbd.log" 'max log size = 0' 'log level = 1' \
          '[share]' "path = $exp" 'read only = no' 'guest ok = yes' 'guest only = yes' 'force user = root' \
          'force group = root'
        [ -z "$NAS_EXPORT_OPTS" ] || tr ';' '\n' <<<"$NAS_EXPORT_OPTS"
      } >"$W/smb.conf"
      NAS_LOG=$W/smbd.log
      ip netns exec nas smbd -D -s "$W/smb.conf" >>"$NAS_LOG" 2>&1 || nas_fail "smbd did not start: $(tail1 "$NAS_LOG")"
      stamp "smbd -D returned"
      retry 150 30 listening 445 || nas_fail "smbd did not start: $(tail1 "$NAS_LOG")"
      ;;
    nfs)
      src=$NAS_ADDR:/
      opts=vers=4.2
      NAS_LOG=$W/nfs.log
      echo "$exp $NAS_CLIENT_ADDR/24($NAS_EXPORT_OPTS)" >/etc/exports
      # nfsd's control files and rpc_pipefs are per network namespace: these are the ones of
      # `nas`. The first OPEN for writing waits out nfsd's grace period (~90 s by default): it is
      # shortened to 10 s (the least) with the lease, and skipped altogether when nfsdcld, the
      # only client tracking nfsd has in a namespace, says that no client is to reclaim.
      mkdir -p "$W/rpc_pipefs" "$W/nfsdcld"
      nsenter --net=/run/netns/nas mount -t nfsd nfsd /proc/fs/nfsd 2>>"$NAS_LOG" &&
        nsenter --net=/run/netns/nas mount -t rpc_pipefs sunrpc "$W/rpc_pipefs" 2>>"$NAS_LOG" &&
        echo 10 >/proc/fs/nfsd/nfsv4gracetime && echo 10 >/proc/fs/nfsd/nfsv4leasetime ||
        nas_fail "cannot mount nfsd's control files for namespace nas: $(tail1 "$NAS_LOG")"
      # In the foreground (of a background job) so that its messages land in the log. Its
      # database is there once it watches for nfsd's pipe, which nfsd gives it 0.5 s to open.
      ip netns exec nas nfsdcld -F -p "$W/rpc_pipefs" -s "$W/nfsdcld" >>"$NAS_LOG" 2>&1 &
      retry 100 20 test -e "$W/nfsdcld/main.sqlite" || nas_fail "nfsdcld did not start: $(tail1 "$NAS_LOG")"
      stamp "nfsd control files"
      ip netns exec nas rpcbind -w >>"$NAS_LOG" 2>&1 || nas_fail "rpcbind did not start: $(tail1 "$NAS_LOG")"
      # nfsd gives nfsdcld 0.5 s to open its pipe, which a busy emulated guest can miss; then
      # the grace period runs (v4_end_grace says N), and a restart of nfsd tries again.
      for i in 1 2 3; do
        ip netns exec nas rpc.nfsd -N 3 8 >>"$NAS_LOG" 2>&1 || nas_fail "rpc.nfsd did not start: $(tail1 "$NAS_LOG")"
        [ "$(cat /proc/fs/nfsd/v4_end_grace 2>/dev/null)" != Y ] || break
        echo "lab-vm: nfsd is in its grace period (nfsdcld missed it), restart $i" >>"$NAS_LOG"
        [ "$i" = 3 ] || ip netns exec nas rpc.nfsd 0 >>"$NAS_LOG" 2>&1
      done
      stamp "rpc.nfsd"
      ip netns exec nas exportfs -ra >>"$NAS_LOG" 2>&1 || nas_fail "exportfs -ra failed: $(tail1 "$NAS_LOG")"
      ip netns exec nas rpc.mountd -N 3 >>"$NAS_LOG" 2>&1 || nas_fail "rpc.mountd did not start: $(tail1 "$NAS_LOG")"
      retry 150 30 listening 2049 || nas_fail "nfsd did not start: nothing listens on 2049: $(tail1 "$NAS_LOG")"
      ;;
  esac
  stamp "server listening"
  [ -z "$NAS_MOUNT_OPTS" ] || opts=$opts,$NAS_MOUNT_OPTS
  # Each try bounded too: a mount against a server that does not answer can hang for minutes.
  retry 5 60 timeout 20 mount -t "${NAS_KIND/smb/cifs}" "$src" "$NAS_MNT" -o "$opts" 2>>"$log" ||
    nas_fail "mount -t ${NAS_KIND/smb/cifs} $src $NAS_MNT -o $opts failed: $(tail1 "$log" 2) (server log: $(tail1 "$NAS_LOG" 2))"
  stamp "share mounted"
  timeout 30 sh -c 'echo probe >"$1/.lab-nas-probe" && rm "$1/.lab-nas-probe"' sh "$NAS_MNT" 2>>"$log" ||
    nas_fail "the share at $NAS_MNT is not writable: $(tail1 "$log" 2)"
  stamp "share writable"
  t=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  echo "lab-vm: NAS $NAS_KIND: $src on $NAS_MNT -o $opts (export $exp, ext4 $NAS_SIZE${NAS_DISK_DELAY:+ writing $NAS_DISK_DELAY ms slower}, namespace nas, $veth $NAS_CLIENT_ADDR -> $veth_srv $NAS_ADDR), up in $t s" >&2
  export LAB_NAS_KIND=$NAS_KIND LAB_NAS_MNT=$NAS_MNT LAB_NAS_ADDR=$NAS_ADDR LAB_NAS_CLIENT_ADDR=$NAS_CLIENT_ADDR \
    LAB_NAS_EXPORT=$exp LAB_NAS_NETNS=nas LAB_NAS_VETH=$veth LAB_NAS_SOURCE=$src LAB_NAS_LOG=$NAS_LOG
}
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mkdir -p "/lib/modules/$KVER" && mount --bind "$MODDIR" "/lib/modules/$KVER" || fail "cannot bind the modules of $KVER"
for i in "${!SHARES[@]}"; do
  mkdir -p "${SHARES[$i]}" && mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 "xfbshare$i" "${SHARES[$i]}" ||
    fail "cannot mount --share ${SHARES[$i]}"
done
hostname lab-vm
ip link set lo up
modprobe rdma_rxe || fail "modprobe rdma_rxe failed"
modprobe dummy || fail "modprobe dummy failed"
ip link add dummy0 type dummy && ip link set dummy0 mtu "$MTU" && ip addr add "$ADDR/24" dev dummy0 &&
  ip link set dummy0 up || fail "cannot set up dummy0 with MTU $MTU"
rdma link add rxe0 type rxe netdev dummy0 || fail "rdma link add rxe0 type rxe netdev dummy0 failed"
ulimit -l unlimited
pmtu=$(ibv_devinfo -d rxe0 2>/dev/null | sed -n 's/.*active_mtu:[[:space:]]*\([0-9]*\).*/\1/p' | head -n 1)
echo "lab-vm: rxe0 on dummy0 $ADDR/24, MTU $MTU (RDMA active_mtu ${pmtu:-unknown})" >&2
export RDMA_VM_DEV=rxe0 RDMA_VM_NETDEV=dummy0 RDMA_VM_ADDR=$ADDR RDMA_VM_MTU=$MTU
[ -z "$NAS_KIND" ] || nas_up
while IFS= read -r -d '' kv; do export "$kv"; done <"$R/env"
cd "$CWD" 2>/dev/null || { echo "lab-vm: cannot cd to $CWD in the guest; running in /" >&2; cd /; }
mapfile -d '' -t argv <"$R/cmd"
"${argv[@]}"
st=$?
echo "$st" >"$R/status"
off
EOF
}

cmd_run() {
  local mtu=1500 shares=() envs=() s nas='' nas_size=512M nas_bytes nas_export_opts='' nas_mount_opts='' nas_disk_delay='' nas_opts_given=''
  while [ $# -gt 0 ]; do
    case $1 in
      --nas) [ $# -ge 2 ] || usage; nas=$2; shift 2 ;;
      --nas=*) nas=${1#*=}; shift ;;
      --nas-size) [ $# -ge 2 ] || usage; nas_size=$2; nas_opts_given=1; shift 2 ;;
      --nas-size=*) nas_size=${1#*=}; nas_opts_given=1; shift ;;
      --nas-export-opts) [ $# -ge 2 ] || usage; nas_export_opts=$2; nas_opts_given=1; shift 2 ;;
      --nas-export-opts=*) nas_export_opts=${1#*=}; nas_opts_given=1; shift ;;
      --nas-mount-opts) [ $# -ge 2 ] || usage; nas_mount_opts=$2; nas_opts_given=1; shift 2 ;;
      --nas-mount-opts=*) nas_mount_opts=${1#*=}; nas_opts_given=1; shift ;;
      --nas-disk-delay) [ $# -ge 2 ] || usage; nas_disk_delay=$2; nas_opts_given=1; shift 2 ;;
      --nas-disk-delay=*) nas_disk_delay=${1#*=}; nas_opts_given=1; shift ;;
      --mtu) [ $# -ge 2 ] || usage; mtu=$2; shift 2 ;;
      --mtu=*) mtu=${1#*=}; shift ;;
      --share) [ $# -ge 2 ] || usage; shares+=("$2"); shift 2 ;;
      --share=*) shares+=("${1#*=}"); shift ;;
      --env) [ $# -ge 2 ] || usage; envs+=("$2"); shift 2 ;;
      --env=*) envs+=("${1#*=}"); shift ;;
      --) shift; break ;;
      -h|--help) usage ;;
      *) echo "lab-vm: unknown option '$1' (the command goes after --)" >&2; usage ;;
    esac
  done
  [ $# -ge 1 ] || { echo "lab-vm: run needs a command after --" >&2; usage; }
  [[ $mtu =~ ^[0-9]+$ ]] && [ "$mtu" -ge 1280 ] && [ "$mtu" -le 65535 ] || die "--mtu must be 1280..65535 (got '$mtu')"
  [[ $vm_timeout =~ ^[0-9]+$ ]] && [ "$vm_timeout" -gt 0 ] || die "RDMA_VM_TIMEOUT must be a number of seconds (got '$vm_timeout')"
  [ ${#shares[@]} -le 8 ] || die "at most 8 --share directories"
  for s in "${!shares[@]}"; do
    [ -d "${shares[$s]}" ] || die "--share ${shares[$s]}: not a directory"
    shares[$s]=$(cd "${shares[$s]}" && pwd -P)
  done
  for s in "${envs[@]}"; do [[ $s =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env must be NAME=VALUE (got '$s')"; done
  case $nas in
    smb|nfs) ;;
    '') [ -z "$nas_opts_given" ] || die "--nas-size, --nas-export-opts, --nas-mount-opts and --nas-disk-delay need --nas smb|nfs" ;;
    *) die "--nas must be smb or nfs (got '$nas')" ;;
  esac
  nas_bytes=$(numfmt --from=iec "$nas_size" 2>/dev/null || numfmt --from=auto "$nas_size" 2>/dev/null) &&
    [ "$nas_bytes" -ge $((16 << 20)) ] 2>/dev/null || die "--nas-size must be a size of 16M or more, like 512M or 2G (got '$nas_size')"
  [[ $nas_export_opts != *[[:space:]]* || $nas = smb ]] || die "--nas-export-opts for nfs is one option list, like rw,async,no_root_squash (got '$nas_export_opts')"
  [[ $nas_export_opts != *$'\n'* ]] || die "--nas-export-opts must be one line"
  [ -z "$nas_disk_delay" ] || [[ $nas_disk_delay =~ ^[1-9][0-9]{0,3}$ ]] || die "--nas-disk-delay is a whole number of milliseconds, 1 to 9999 (got '$nas_disk_delay')"
  [[ $nas_mount_opts != *[[:space:]]* ]] || die "--nas-mount-opts is one option list, like cache=strict,vers=3.0 (got '$nas_mount_opts')"
  if [ "$nas" = nfs ] && [ -z "$nas_export_opts" ]; then nas_export_opts=rw,no_root_squash,no_subtree_check,fsid=0,sync; fi

  if [ -n "$(not_ready ${nas:+nas})" ]; then
    note "not set up yet, running setup first"
    cmd_setup
  fi
  local qemu k tmp rc st qopts=() console
  qemu=$(qemu_bin)
  k=$(kver)
  case $qemu in
    "$cache"/qemu/*)
      qopts+=(-L "$cache/qemu/usr/share/qemu")
      QEMU_MODULE_DIR=$(echo "$cache"/qemu/usr/lib/*/qemu)
      export QEMU_MODULE_DIR
      ;;
  esac

  tmp=$(mktemp -d "${TMPDIR:-/tmp}/lab-vm.XXXXXX")
  local pids=()
  # shellcheck disable=SC2064
  trap "kill \${pids[*]} 2>/dev/null || true; rm -rf '$tmp'" EXIT
  mkdir "$tmp/guest"
  guest_script >"$tmp/guest/guest.sh"
  {
    printf 'KVER=%q\nMODDIR=%q\nMTU=%q\nADDR=%q\nCWD=%q\n' "$k" "$cache/kernel/lib/modules/$k" "$mtu" "$guest_addr" "$PWD"
    printf 'NAS_KIND=%q\nNAS_SIZE=%q\nNAS_BYTES=%q\nNAS_EXPORT_OPTS=%q\nNAS_MOUNT_OPTS=%q\nNAS_DISK_DELAY=%q\n' \
      "$nas" "$nas_size" "$nas_bytes" "$nas_export_opts" "$nas_mount_opts" "$nas_disk_delay"
    printf 'NAS_MNT=/mnt/nas\nNAS_ADDR=%q\nNAS_CLIENT_ADDR=%q\n' "$nas_addr" "$nas_client_addr"
    printf 'SHARES=('
    for s in "${shares[@]}"; do printf '%q ' "$s"; done
    printf ')\n'
  } >"$tmp/guest/guest.env"
  printf '%s\0' "$@" >"$tmp/guest/cmd"
  if [ ${#envs[@]} -gt 0 ]; then printf '%s\0' "${envs[@]}" >"$tmp/guest/env"; else : >"$tmp/guest/env"; fi

  # QEMU option values double their commas.
  q() { printf '%s' "${1//,/,,}"; }
  for s in out err; do mkfifo "$tmp/$s.in" "$tmp/$s.out"; done
  console=$tmp/console.log
  # No crypto self-tests: under TCG one of them (a cryptomgr_test thread) now and then spins
  # forever on a vCPU, and the guest then hangs until RDMA_VM_TIMEOUT.
  local klog="quiet loglevel=3"
  [ "$verbose" != 1 ] || klog="loglevel=7"
  local args=(
    -machine pc -accel tcg -cpu "$cpu" -smp "$smp" -m "$mem" -nodefaults -display none -no-reboot -nic none
    -kernel "$cache/kernel/boot/vmlinuz-$k" -initrd "$cache/initramfs-$k.cpio.gz"
    -append "console=ttyS0 $klog panic=-1 8250.nr_uarts=4 cryptomgr.notests=1"
    -serial "file:$(q "$console")"
    -chardev "pipe,id=out,path=$(q "$tmp/out")" -serial chardev:out
    -chardev "pipe,id=err,path=$(q "$tmp/err")" -serial chardev:err
    -virtfs "local,path=/,mount_tag=xfbroot,security_model=none,readonly=on,multidevs=remap"
    -virtfs "local,path=$(q "$tmp/guest"),mount_tag=xfbrun,security_model=none,multidevs=remap"
  )
  for s in "${!shares[@]}"; do
    args+=(-virtfs "local,path=$(q "${shares[$s]}"),mount_tag=xfbshare$s,security_model=none,multidevs=remap")
  done
  cat "$tmp/out.out" &
  pids+=($!)
  cat "$tmp/err.out" >&2 &
  pids+=($!)
  if [ "$verbose" = 1 ]; then
    : >"$console"
    tail -n +1 -f "$console" >&2 &
    pids+=($!)
  fi
  rc=0
  timeout -k 10 "$vm_timeout" "$qemu" "${qopts[@]}" "${args[@]}" </dev/null 2>"$tmp/qemu.err" || rc=$?
  # The readers end at EOF once QEMU is gone.
  wait "${pids[0]}" "${pids[1]}" 2>/dev/null || true
  if [ "$verbose" = 1 ]; then sleep 0.2; kill "${pids[2]}" 2>/dev/null || true; fi
  st=$(cat "$tmp/guest/status" 2>/dev/null || true)
  if [[ $st =~ ^[0-9]+$ ]]; then
    exit "$st"
  fi
  # The guest said in one line what failed.
  if [ "$st" = nas-failed ]; then exit 1; fi
  if [ -s "$tmp/qemu.err" ]; then sed 's/^/lab-vm: qemu: /' "$tmp/qemu.err" | tail -n 5 >&2; fi
  if [ "$verbose" != 1 ] && [ -s "$console" ]; then
    echo "lab-vm: last lines of the guest console:" >&2
    tail -n 15 "$console" | tr -d '\r' | sed 's/^/  /' >&2
  fi
  if [ "$st" = setup-failed ]; then die "the guest could not set up rxe0 (see above); the command did not run"; fi
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then die "the VM did not finish within ${vm_timeout} s (RDMA_VM_TIMEOUT) and reported no exit status"; fi
  die "the guest never reported an exit status (qemu exited with $rc)"
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
  setup) [ $# -eq 0 ] || usage; cmd_setup ;;
  check) [ $# -le 1 ] || usage; cmd_check "$@" ;;
  run) cmd_run "$@" ;;
  -h|--help|help) usage ;;
  *) echo "lab-vm: unknown command '$cmd'" >&2; usage ;;
esac
