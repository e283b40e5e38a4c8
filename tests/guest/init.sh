#!/bin/busybox sh
# /init of the guest that tests/guest/run.sh boots (busybox, in its initramfs): the host's root
# over 9p read-only with an overlay whose upper layer is the guest's memory, the command run in
# it, and its exit status printed as the line OVBD-GUEST-EXIT=N that run.sh reads back.
# Files beside it in the initramfs: /modules/order (modules to insmod, in order), /load (modules
# to modprobe once the host's root is mounted), /command, /env, /cwd.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod "/modules/$m" || echo "guest: insmod $m failed"; done

# mount_root: /root9p (the host's /, read-only) under /newroot (writable, in memory).
mount_root() {
  mkdir -p /root9p /rw /newroot
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /root9p ||
    { echo "guest: mounting the host's root over 9p failed"; return 1; }
  mount -t tmpfs -o size=85% rw /rw && mkdir -p /rw/upper /rw/work &&
    mount -t overlay -o lowerdir=/root9p,upperdir=/rw/upper,workdir=/rw/work root /newroot ||
    { echo "guest: the overlay over the host's root failed"; return 1; }
  mount -t proc proc /newroot/proc
  mount -t sysfs sys /newroot/sys
  mount -t devtmpfs dev /newroot/dev
  mkdir -p /newroot/dev/pts /newroot/dev/shm
  mount -t devpts devpts /newroot/dev/pts
  mount -t tmpfs shm /newroot/dev/shm
  mount -t tmpfs run /newroot/run
  ln -sf /proc/self/fd /newroot/dev/fd
  ln -sf /proc/self/fd/0 /newroot/dev/stdin
  ln -sf /proc/self/fd/1 /newroot/dev/stdout
  ln -sf /proc/self/fd/2 /newroot/dev/stderr
}

rc=125
if mount_root; then
  chroot /newroot /sbin/modprobe -a $(cat /load) || echo "guest: modprobe $(cat /load) failed"
  cp /command /newroot/.guest-command
  cp /env /newroot/.guest-env
  echo "guest: running $(cat /command)"
  chroot /newroot /bin/bash -c ". /.guest-env
    export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    cd '$(cat /cwd)' && . /.guest-command" < /dev/console
  rc=$?
fi
echo "OVBD-GUEST-EXIT=$rc"
sync
poweroff -f
