#!/bin/bash
# Build the tiny test guest used by the QEMU driver's functional tests and the
# live-image benchmark: Debian's kernel plus a busybox initramfs whose /init
# prints a boot token, then a counter with fresh /dev/urandom bytes every 0.2 s
# on the serial console. That makes the properties of a live image visible from
# the outside:
#   * memory continuity: a clone re-prints the blessed VM's token
#     (`TOKEN <hex>` every 10th line) and continues its counter;
#   * divergence: vmgenid makes Linux reseed its RNG, so clones print
#     different `RNG` bytes; the guest prints `VMGENID-CHANGED <guid bytes>`
#     when the generation id (fw_cfg etc/vmgenid_guid) changes under it;
#   * guest parameters: `gc.*=` words of the kernel command line and the
#     fw_cfg files opt/com.gridcentric/guest (k=v lines) and
#     opt/com.gridcentric/user_data are printed as `GUEST-PARAM k=v` and
#     `USER-DATA <md5> <bytes>`, at boot and again after every vmgenid change
#     (qemu_fw_cfg is reloaded so it re-reads the clone's fw_cfg directory);
#   * identity: after a vmgenid change the guest first reads its files from
#     the virtio-serial port com.gridcentric.identity.0 when the VM has it
#     (gridcentric_storage/virt/qemu_identity.py), else from fw_cfg; it prints
#     `IDENTITY-VIA port|fw_cfg` and `INSTANCE-ID <the clone's id>`.
#
#   tools/build-test-guest.sh [DIR]      (default $GC_GUEST_DIR or
#                                         /var/cache/gridcentric-storage/test-guest)
# Produces DIR/vmlinuz and DIR/initrd.img. Idempotent: rebuilds only when the
# kernel, busybox or this script changed. Needs linux-image-amd64 and
# busybox-static (and cpio, gzip).
set -euo pipefail

DIR=${1:-${GC_GUEST_DIR:-/var/cache/gridcentric-storage/test-guest}}
BUSYBOX=${GC_BUSYBOX:-/bin/busybox}

KERNEL=${GC_GUEST_KERNEL:-$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)}
if [ -z "$KERNEL" ] || [ ! -r "$KERNEL" ]; then
    echo "no kernel in /boot: apt-get install linux-image-amd64" >&2
    exit 1
fi
KVER=${KERNEL##*/vmlinuz-}
MODDIR=/lib/modules/$KVER
if [ ! -x "$BUSYBOX" ] || ldd "$BUSYBOX" >/dev/null 2>&1; then
    echo "$BUSYBOX is not a static busybox: apt-get install busybox-static" >&2
    exit 1
fi
for tool in cpio gzip; do
    command -v $tool >/dev/null || { echo "$tool is missing: apt-get install $tool" >&2; exit 1; }
done

# Modules loaded at boot, in dependency order (missing ones are skipped):
# fw_cfg for guest parameters, virtio for disks and hot-plugged volumes.
MODULES="drivers/firmware/qemu_fw_cfg drivers/virtio/virtio_ring drivers/virtio/virtio
drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci_modern_dev
drivers/virtio/virtio_pci drivers/block/virtio_blk drivers/char/virtio_console"

SELF_SUM=$(sha256sum "$0" | cut -d' ' -f1)
STAMP="$KERNEL $(stat -c %s.%Y "$KERNEL") $(stat -L -c %s.%Y "$BUSYBOX") $SELF_SUM"
if [ -r "$DIR/.stamp" ] && [ "$(cat "$DIR/.stamp")" = "$STAMP" ] \
        && [ -s "$DIR/vmlinuz" ] && [ -s "$DIR/initrd.img" ]; then
    echo "$DIR is up to date"
    exit 0
fi

mkdir -p "$DIR"
WORK=$(mktemp -d "$DIR/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,dev,proc,sys,tmp,lib/modules}
cp "$BUSYBOX" "$ROOT/bin/busybox"
for name in sh mount insmod rmmod head od tr sleep cat rm md5sum wc cut mkdir timeout \
            base64 grep; do
    ln -s busybox "$ROOT/bin/$name"
done
for mod in $MODULES; do
    src=$MODDIR/kernel/$mod.ko
    if [ -r "$src" ]; then
        cp "$src" "$ROOT/lib/modules/"
    elif [ -r "$src.xz" ]; then
        xz -dc "$src.xz" > "$ROOT/lib/modules/$(basename "$mod").ko"
    elif [ -r "$src.zst" ] && command -v zstd >/dev/null; then
        zstd -qdc "$src.zst" > "$ROOT/lib/modules/$(basename "$mod").ko"
    fi
done
# The console device node must exist before devtmpfs is mounted.
mknod -m 600 "$ROOT/dev/console" c 5 1 2>/dev/null || true

cat > "$ROOT/init" <<'EOF'
#!/bin/sh
# gridcentric-storage test guest: see tools/build-test-guest.sh.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
for m in qemu_fw_cfg virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev \
         virtio_pci virtio_blk virtio_console; do
    [ -r /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko 2>/dev/null
done
# Kernel notices (e.g. "virtio_blk ... [vdb]" for a hot-plugged volume) reach
# the console even with "quiet".
echo 6 > /proc/sys/kernel/printk

hex8() { head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
FWCFG=/sys/firmware/qemu_fw_cfg/by_name/opt/com.gridcentric
VIA=
# The clone's file $1: from the identity port when it came that way, else fw_cfg.
clone_file() { if [ "$VIA" = port ]; then echo /tmp/identity/$1; else echo $FWCFG/$1/raw; fi; }
show_params() {
    for word in $(cat /proc/cmdline); do
        case $word in gc.*=*) echo "GUEST-PARAM $word" ;; esac
    done
    [ -n "$VIA" ] && echo "IDENTITY-VIA $VIA"
    f=$(clone_file instance)
    [ -r $f ] && grep '^id=' $f | cut -d= -f2 | while read -r id; do echo "INSTANCE-ID $id"; done
    f=$(clone_file guest)
    if [ -r $f ]; then
        while IFS= read -r line || [ -n "$line" ]; do
            [ -n "$line" ] && echo "GUEST-PARAM $line"
        done < $f
    fi
    f=$(clone_file user_data)
    if [ -r $f ]; then
        echo "USER-DATA $(md5sum < $f | cut -d' ' -f1) $(wc -c < $f)"
    fi
}

# The identity port: one "<name> <base64>" line per file until END, answered
# with GC-IDENTITY-ACK (the contract of gridcentric_storage/virt/qemu_identity.py).
read_identity() {
    port=
    for p in /sys/class/virtio-ports/*; do
        [ "$(cat $p/name 2>/dev/null)" = com.gridcentric.identity.0 ] && port=/dev/${p##*/}
    done
    [ -n "$port" ] || return 1
    rm -rf /tmp/identity && mkdir -p /tmp/identity
    timeout 5 sh -c '
        exec 3<>"$1"
        read -r magic version <&3 && [ "$magic" = GC-IDENTITY ] || exit 1
        while read -r name data <&3; do
            case $name in
                END) echo GC-IDENTITY-ACK >&3; exit 0 ;;
                instance|guest|user_data) echo "$data" | base64 -d > /tmp/identity/$name ;;
            esac
        done
        exit 1' sh "$port"
}

# QEMU's vmgenid device also publishes the generation id as fw_cfg file
# etc/vmgenid_guid, read live through the fw_cfg interface (Linux 6.1's
# vmgenid driver reseeds the RNG but sends no uevent).
GENID=/sys/firmware/qemu_fw_cfg/by_name/etc/vmgenid_guid/raw
genid() { [ -r $GENID ] && od -An -tx1 -j 40 -N 16 $GENID | tr -d ' \n'; }

TOKEN=$(hex8)
echo "BOOT-TOKEN $TOKEN"
show_params
LAST_GENID=$(genid)
n=0
while :; do
    NOW_GENID=$(genid)
    if [ "$NOW_GENID" != "$LAST_GENID" ]; then
        # Re-read the fw_cfg directory: a clone has its own guest parameters.
        rmmod qemu_fw_cfg 2>/dev/null && insmod /lib/modules/qemu_fw_cfg.ko 2>/dev/null
        LAST_GENID=$(genid)
        echo "VMGENID-CHANGED $LAST_GENID"
        if read_identity; then VIA=port; else VIA=fw_cfg; fi
        show_params
    fi
    echo "COUNTER $n RNG $(hex8)"
    [ $((n % 10)) -eq 0 ] && echo "TOKEN $TOKEN"
    n=$((n + 1))
    sleep 0.2
done
EOF
chmod 755 "$ROOT/init"

(cd "$ROOT" && find . -print0 | sort -z | cpio --quiet -o -0 -H newc -R 0:0) \
    | gzip -1 > "$WORK/initrd.img"
cp "$KERNEL" "$WORK/vmlinuz"
mv -f "$WORK/vmlinuz" "$DIR/vmlinuz"
mv -f "$WORK/initrd.img" "$DIR/initrd.img"
echo "$STAMP" > "$DIR/.stamp"
echo "built $DIR/vmlinuz ($KVER) and $DIR/initrd.img"
