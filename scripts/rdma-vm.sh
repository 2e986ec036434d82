#!/usr/bin/env bash
# The old name of scripts/lab-vm.sh (the soft-RoCE VM, now also the NAS lab); same arguments.
exec "$(dirname "$0")/lab-vm.sh" "$@"
