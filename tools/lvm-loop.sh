#!/bin/bash
# A throw-away LVM volume group on a loop device, for tests and demos on hosts
# without device-mapper (no activation). Its private lvm.conf (LVM_SYSTEM_DIR)
# sees only that loop device and never touches device-mapper or udev.
#   tools/lvm-loop.sh create DIR [SIZE_MIB] [VG]   (defaults: 1024, gc-test-<random>)
#       prints shell assignments to eval:
#       LVM_SYSTEM_DIR=DIR/etc GC_LVM_VG=<vg> GC_LVM_PV=/dev/loopN
#   tools/lvm-loop.sh remove DIR
#       detaches every loop device over the PV (left by a driver's data paths),
#       removes the VG and PV, detaches the PV's loop device and deletes DIR.
# Needs root, /dev/loop-control and lvm2 (apt-get install -y lvm2).
set -euo pipefail
export LVM_SUPPRESS_FD_WARNINGS=1

create() {
    local dir=$1 size=${2:-1024} vg=${3:-gc-test-$RANDOM$RANDOM}
    [ ! -e "$dir/pv" ] || { echo "$dir already holds a VG; remove it first" >&2; exit 1; }
    mkdir -p "$dir/etc"
    truncate -s "${size}M" "$dir/pv.img"
    local pv
    pv=$(losetup --find --show "$dir/pv.img")
    echo "$pv" >"$dir/pv"
    echo "$vg" >"$dir/vg"
    cat >"$dir/etc/lvm.conf" <<CONF
devices {
    filter = [ "a|^$pv\$|", "r|.*|" ]
    global_filter = [ "a|^$pv\$|", "r|.*|" ]
    use_devicesfile = 0
    obtain_device_list_from_udev = 0
}
activation {
    udev_sync = 0
    udev_rules = 0
    monitoring = 0
}
global {
    activation = 0
}
CONF
    export LVM_SYSTEM_DIR=$dir/etc
    pvcreate -q "$pv" 2>/dev/null >&2 || { remove "$dir"; echo "pvcreate $pv failed" >&2; exit 1; }
    vgcreate -q "$vg" "$pv" 2>/dev/null >&2 || { remove "$dir"; echo "vgcreate $vg failed" >&2; exit 1; }
    echo "LVM_SYSTEM_DIR=$dir/etc GC_LVM_VG=$vg GC_LVM_PV=$pv"
}

remove() {
    local dir=$1 pv vg
    [ -f "$dir/pv" ] || { rm -rf "$dir"; return 0; }
    pv=$(cat "$dir/pv"); vg=$(cat "$dir/vg" 2>/dev/null || true)
    export LVM_SYSTEM_DIR=$dir/etc
    # loop devices stacked on the PV (a driver's no-device-mapper data paths)
    for dev in $(losetup --list --noheadings -O NAME,BACK-FILE | awk -v pv="$pv" '$2 == pv {print $1}'); do
        losetup -d "$dev" 2>/dev/null || true
    done
    if [ -n "$vg" ]; then vgremove -q -ff "$vg" >/dev/null 2>&1 || true; fi
    pvremove -q -ff -y "$pv" >/dev/null 2>&1 || true
    # only detach the PV's loop device if it is still the one over our image
    if losetup --list --noheadings -O NAME,BACK-FILE | awk -v pv="$pv" -v img="$dir/pv.img" \
            '$1 == pv && index($2, img) == 1 {found=1} END {exit !found}'; then
        losetup -d "$pv"
    fi
    rm -rf "$dir"
}

case "${1:-}" in
create) shift; [ $# -ge 1 ] || { echo "usage: $0 create DIR [SIZE_MIB] [VG]" >&2; exit 2; }; create "$@" ;;
remove) shift; [ $# -eq 1 ] || { echo "usage: $0 remove DIR" >&2; exit 2; }; remove "$1" ;;
*) echo "usage: $0 create DIR [SIZE_MIB] [VG] | remove DIR" >&2; exit 2 ;;
esac
