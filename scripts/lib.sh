# Shared by the compare-*.sh scripts: source it, do not run it.
#
# machine_line [DIR...]: one line saying which machine a table of figures was measured on (CPU
# model, cores, memory, kernel, and for each DIR the file system and the disk under it), so a
# figure pasted into the README or a note can be read against the machine that made it.

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
