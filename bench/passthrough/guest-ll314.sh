#!/bin/bash
# In the guest: ll314 (libfuse 3.14 + passthrough hack) with a thin LV and with
# a regular file on tmpfs. Needs /dev/vda.
here=$(cd "$(dirname "$0")" && pwd)
echo "kernel: $(uname -r)"
pvcreate -q /dev/vda >/dev/null && vgcreate -q t /dev/vda >/dev/null &&
  lvcreate -q -L 1g --type thin-pool -n tp t >/dev/null && lvcreate -q -V 256m -T t/tp -n v >/dev/null || exit 1
dd if=/dev/urandom of=/dev/t/v bs=1M count=64 oflag=direct status=none
dd if=/dev/urandom of=/tmp/f bs=1M count=64 status=none
mkdir -p /mnt/a
for b in /dev/t/v /tmp/f; do
  "$here/ll314" --passthrough $b /mnt/a 2>/tmp/log &
  for _ in $(seq 50); do mountpoint -q /mnt/a && break; sleep 0.1; done
  if cmp <(head -c 64M /mnt/a/disk) <(head -c 64M $b); then echo "$b: read through FUSE == backing"; else echo "$b: read FAILED"; fi
  umount /mnt/a; wait
  sed "s|^|   $b: |" /tmp/log
done
