#!/usr/bin/env bash
# run.py inside a qemu guest on this machine, for sizes the host's limits forbid: a sandbox
# whose hard descriptor limit is below 50,000 and that lacks CAP_SYS_RESOURCE cannot hold
# 50,000 connections in one process, but a guest kernel's root can. The guest boots
# Debian's kernel with a tiny initramfs (busybox + the virtio/9p modules) and mounts this
# machine's root file system over 9p, so it runs this very checkout, venv and Node; only
# the kernel (and its limits) differ. Both cores go to the guest (2 vCPUs): run.py pins
# the server to vCPU 0 and the load generator to vCPU 1 as on the host. The guest is
# emulated unless VM_ACCEL=kvm (see below): its memory figures are real, its rates compare
# the servers with each other only.
#   bash benchmarks/in_vm.sh --clients 10000,50000 --scenarios all --servers roomcast,node --reps 1
# Arguments go to run.py (its --out is benchmarks/results/raw/vm/ unless given). Needs root
# (qemu's 9p passthrough, and apt-get for qemu-system-x86, busybox-static and
# linux-image-amd64 when missing) and a built checkout (.venv, compiled extensions, the load generator).
# Stops by itself: the guest powers off when run.py ends, and a deadline kills qemu.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/benchmarks/results/raw/vm

if [ "${1:-}" = --guest ]; then
  # in the guest, as its init, on the host's root file system: the usual mounts, loopback up,
  # a wide ephemeral port range, no descriptor limit to speak of, then run.py, then power off
  set +e
  mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
  mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm
  mount -t tmpfs tmpfs /tmp; mount -t tmpfs tmpfs /run
  ip link set lo up
  echo "1024 65535" > /proc/sys/net/ipv4/ip_local_port_range
  echo 65535 > /proc/sys/net/core/somaxconn
  ulimit -Hn 1048576; ulimit -n 1048576
  bash "$OUT/guest-command.sh"
  echo $? > "$OUT/guest-status"
  sync
  echo o > /proc/sysrq-trigger
  sleep 60
  exit 1
fi
command -v qemu-system-x86_64 >/dev/null && command -v busybox >/dev/null \
  && ls /boot/vmlinuz-* >/dev/null 2>&1 \
  || DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-system-x86 busybox-static linux-image-amd64 >/dev/null
KVER=$(ls /lib/modules | sort -V | tail -1)
[ -f "/boot/vmlinuz-$KVER" ] || { echo "no /boot/vmlinuz-$KVER" >&2; exit 1; }
PY=${PYTHON:-$ROOT/.venv/bin/python}
ARGS=("$@")
case " $* " in *" --out "*) ;; *) ARGS+=(--out "$OUT") ;; esac
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# the initramfs: load the modules 9p over virtio needs, mount the host's root, switch to it
mkdir -p "$WORK/initrd/bin" "$WORK/initrd/mods" "$WORK/initrd/newroot"
cp "$(command -v busybox)" "$WORK/initrd/bin/busybox"
# the modules in load order (deps first, each once), as modprobe would load them
MODS=""
for f in $(for m in virtio_pci 9pnet_virtio 9p; do modprobe -S "$KVER" --show-depends "$m"; done \
           | awk '$1 == "insmod" {print $2}'); do
  m=$(basename "$f"); m=${m%%.ko*}
  case " $MODS " in *" $m "*) continue ;; esac
  MODS="$MODS $m"
  case "$f" in
    *.xz) xz -dc "$f" > "$WORK/initrd/mods/$m.ko" ;;
    *.zst) zstd -qdc "$f" > "$WORK/initrd/mods/$m.ko" ;;
    *) cp "$f" "$WORK/initrd/mods/$m.ko" ;;
  esac
done
cat > "$WORK/initrd/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t devtmpfs dev /dev
for m in $MODS; do insmod /mods/\$m.ko || echo "insmod \$m failed"; done
# the 9p device appears once virtio_pci has probed it
for i in \$(seq 100); do
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=loose hostroot /newroot 2>/dev/null && break
  sleep 0.1
done
grep -q " /newroot " /proc/mounts || { echo "cannot mount the host over 9p"; dmesg | tail -20; echo o > /proc/sysrq-trigger; }
umount /proc
exec switch_root /newroot /bin/bash $ROOT/benchmarks/in_vm.sh --guest
EOF
chmod +x "$WORK/initrd/init"
(cd "$WORK/initrd" && find . | cpio -o -H newc --quiet | gzip -1) > "$WORK/initrd.gz"

# what the guest runs, read by the --guest branch above
{
  printf 'cd %q\n' "$ROOT"
  printf 'export PATH=%q HOME=%q\n' "$(dirname "$PY"):$PATH" "$HOME"
  printf '%q ' "$PY" benchmarks/run.py "${ARGS[@]}"
  echo
} > "$OUT/guest-command.sh"
rm -f "$OUT/guest-status"

MEM_MB=$(( $(awk '/MemAvailable/ {print $2}' /proc/meminfo) * 3 / 4 / 1024 ))
# VM_ACCEL=kvm runs the guest at near-native speed where nested KVM works; on this
# project's sandbox it does not (the guest kernel stops in its decompressor), so the default
# is qemu's emulation (TCG, one thread per vCPU): memory figures are the guest's own, and
# rates are only comparable between servers in the same guest run
case "${VM_ACCEL:-tcg}" in
  kvm) [ -r /dev/kvm ] || { echo "VM_ACCEL=kvm needs /dev/kvm" >&2; exit 1; }
       ACCEL=(-enable-kvm -cpu host,-arch-capabilities) ;;
  *) ACCEL=(-accel tcg,thread=multi -cpu max) ;;
esac
timeout "${VM_TIMEOUT:-3600}" qemu-system-x86_64 "${ACCEL[@]}" -smp 2 -m "$MEM_MB" \
  -kernel "/boot/vmlinuz-$KVER" -initrd "$WORK/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1" -nographic -no-reboot \
  -virtfs "local,path=/,mount_tag=hostroot,security_model=passthrough,multidevs=remap,id=hostroot" \
  > "$OUT/console.log" 2>&1 || true
grep -v '^\[' "$OUT/console.log" | tail -40 || true
[ "$(cat "$OUT/guest-status" 2>/dev/null)" = 0 ] || { echo "the guest's run failed: $OUT/console.log" >&2; exit 1; }
echo "done (console log: $OUT/console.log)"
