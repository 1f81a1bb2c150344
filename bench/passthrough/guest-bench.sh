#!/bin/bash
# Runs in the test guest (tests/vm/run, a 6.9+ kernel): FUSE passthrough with a
# thin LV, and fio reads through it vs. a plain FUSE READ handler vs. raw.
#   BD_GUEST_KERNEL=backports tests/vm/run --disk 4G --timeout 1800 --out DIR -- \
#     bench/passthrough/guest-bench.sh
# Needs /dev/vda (>= 3 GiB), fio, mkfs.ext4, python3; writes DIR/results.txt.
set -u
here=$(cd "$(dirname "$0")" && pwd)
ptfs=$here/ptfs
out=/bdout
rt=${BD_PT_RUNTIME:-10}
res=$out/results.txt
: >"$res"
say() { echo "$*" | tee -a "$res"; }
run() { say "# $*"; "$@" 2>&1 | tee -a "$res"; return "${PIPESTATUS[0]}"; }

say "kernel: $(uname -r) ($(uname -v))"
[[ -x $ptfs ]] || { say "no $ptfs (build it: gcc -O2 -o ptfs ptfs.c)"; exit 1; }

# --- the VG: a thin pool, a 1 GiB thin LV with 512 MiB of data, and a second
# thin LV with ext4 holding a 512 MiB regular file of the same data.
run pvcreate -q /dev/vda && run vgcreate -q t /dev/vda &&
  run lvcreate -q -L 3g --type thin-pool -n tp t &&
  run lvcreate -q -V 1g -T t/tp -n v &&
  run lvcreate -q -V 1g -T t/tp -n fsv || exit 1
lv=/dev/t/v
run dd if=/dev/urandom of=$lv bs=1M count=512 oflag=direct status=none
run modprobe ext4
run mkfs.ext4 -q /dev/t/fsv
mkdir -p /mnt/ext4 /mnt/pt /mnt/plain /mnt/ptf /mnt/plainf
run mount /dev/t/fsv /mnt/ext4
run dd if=$lv of=/mnt/ext4/img bs=1M count=512 iflag=direct oflag=direct status=none
sync
run lvs -o lv_name,lv_size,data_percent t

# ptfs_start MODE-FLAGS BACKING MNT NAME: starts ptfs in the background.
ptfs_start() {
  local flags=$1 backing=$2 mnt=$3 name=$4
  # shellcheck disable=SC2086
  $ptfs $flags --stats "$out/$name.stats" "$backing" "$mnt" 2>"$out/$name.log" &
  for _ in $(seq 50); do mountpoint -q "$mnt" && break; sleep 0.1; done
  mountpoint -q "$mnt" || { say "ptfs $name did not mount"; tee -a "$res" <"$out/$name.log"; return 1; }
}
ptfs_stop() {
  local mnt=$1 name=$2
  umount "$mnt"
  wait
  say "## ptfs $name log:"; sed 's/^/   /' "$out/$name.log" | tee -a "$res"
  say "## ptfs $name requests seen: $(tr '\n' ' ' <"$out/$name.stats" 2>/dev/null)"
}

# fio_set LABEL FILE: seq 1M and rand 4K O_DIRECT psync reads, + 4K QD16 libaio.
fio_set() {
  local label=$1 file=$2 job
  for job in "seqread-1M:--rw=read --bs=1M --ioengine=psync" \
    "randread-4K:--rw=randread --bs=4k --ioengine=psync" \
    "randread-4K-qd16:--rw=randread --bs=4k --ioengine=libaio --iodepth=16"; do
    local jn=${job%%:*} args=${job#*:}
    # shellcheck disable=SC2086
    fio --name="$jn" --filename="$file" --direct=1 --size=512M --time_based --runtime="$rt" \
      --ramp_time=1 --readonly $args --output-format=json >"$out/fio-$label-$jn.json" 2>"$out/fio-$label-$jn.err"
    python3 - "$out/fio-$label-$jn.json" "$label" "$jn" <<'EOF' | tee -a "$res"
import json, sys
try:
    j = json.load(open(sys.argv[1]))["jobs"][0]["read"]
    print(f"RESULT {sys.argv[2]:<24} {sys.argv[3]:<18} {j['bw']/1024:9.1f} MiB/s {j['iops']:9.0f} IOPS  lat {j['clat_ns']['mean']/1000:9.1f} us")
except Exception as e:
    print(f"RESULT {sys.argv[2]:<24} {sys.argv[3]:<18} FAILED ({e})")
EOF
    [[ -s $out/fio-$label-$jn.err ]] && sed 's/^/   fio: /' "$out/fio-$label-$jn.err" | head -5 | tee -a "$res"
  done
}

say ""
say "=== 1. passthrough with the thin LV itself as the backing file"
ptfs_start --passthrough $lv /mnt/pt lv-pt
run stat -c '%n size=%s' /mnt/pt/disk
if run dd if=/mnt/pt/disk of=/dev/null bs=1M count=16 iflag=direct; then
  say "(exit 0: the kernel took the block device as backing file)"
  fio_set fuse-passthru-on-LV /mnt/pt/disk
  say "# write 4 KiB at 600 MiB through passthrough, O_DIRECT; then compare with the LV"
  run dd if=/dev/urandom of=/tmp/blk bs=4k count=1 status=none
  run dd if=/tmp/blk of=/mnt/pt/disk bs=4k seek=153600 count=1 conv=notrunc oflag=direct status=none
  say "(write exit $?)"
  run cmp <(dd if=$lv bs=4k skip=153600 count=1 iflag=direct status=none) /tmp/blk && say "LV has the data written through FUSE"
  say "# write 4 KiB past the end (1 GiB)"
  run dd if=/tmp/blk of=/mnt/pt/disk bs=4k seek=262144 count=1 conv=notrunc oflag=direct status=none
  say "(write past end exit $?)"
  run stat -c 'size after writes=%s' /mnt/pt/disk
  say "# buffered read (no O_DIRECT) and mmap read of the first 1 MiB"
  run cmp <(head -c 1048576 /mnt/pt/disk) <(dd if=$lv bs=1M count=1 status=none) && say "buffered read == LV"
  run python3 -c '
import mmap
f = open("/mnt/pt/disk", "rb"); m = mmap.mmap(f.fileno(), 1 << 20, prot=mmap.PROT_READ)
print("mmap read equal to LV:", m[:] == open("/dev/t/v", "rb").read(1 << 20))'
else
  say "(exit 1)"
fi
ptfs_stop /mnt/pt lv-pt
dmesg | grep -i fuse | tail -5 | tee -a "$res"

say ""
say "=== 2. reads: raw LV, FUSE plain READ handler on the LV"
fio_set raw-thin-LV $lv
ptfs_start "" $lv /mnt/plain lv-plain
fio_set fuse-plain-on-LV /mnt/plain/disk
ptfs_stop /mnt/plain lv-plain

say ""
say "=== 3. reads: a regular file on ext4 on a thin LV: raw, passthrough, plain"
f=/mnt/ext4/img
fio_set raw-ext4-file $f
ptfs_start --passthrough $f /mnt/ptf file-pt
fio_set fuse-passthru-ext4-file /mnt/ptf/disk
ptfs_stop /mnt/ptf file-pt
ptfs_start "" $f /mnt/plainf file-plain
fio_set fuse-plain-ext4-file /mnt/plainf/disk
ptfs_stop /mnt/plainf file-plain

say ""
say "=== 4. passthrough semantics (regular backing file)"
run dd if=/dev/urandom of=/mnt/ext4/small bs=4k count=4 status=none
ptfs_start --passthrough /mnt/ext4/small /mnt/ptf sem-pt
run stat -c 'before: size=%s' /mnt/ptf/disk
say "# write 8 KiB at 16 KiB (extends the file), O_DIRECT then buffered"
run dd if=/dev/urandom of=/mnt/ptf/disk bs=4k count=1 seek=4 conv=notrunc oflag=direct status=none
say "(O_DIRECT write exit $?)"
run dd if=/dev/urandom of=/mnt/ptf/disk bs=4k count=1 seek=5 conv=notrunc status=none
say "(buffered write exit $?)"
run stat -c 'fuse after writes: size=%s' /mnt/ptf/disk
run stat -c 'backing after writes: size=%s' /mnt/ext4/small
run cmp /mnt/ptf/disk /mnt/ext4/small && say "content through FUSE == backing file"
say "# mmap read through the FUSE file"
run python3 -c '
import mmap, sys
f = open("/mnt/ptf/disk", "rb"); m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
b = open("/mnt/ext4/small", "rb").read()
print("mmap read ok, equal to backing:", m[:] == b, "len", len(m))'
say "# mmap write through the FUSE file (MAP_SHARED)"
run python3 -c '
import mmap
f = open("/mnt/ptf/disk", "r+b"); m = mmap.mmap(f.fileno(), 4096)
m[0:5] = b"HELLO"; m.flush()
print("backing starts with:", open("/mnt/ext4/small", "rb").read(5))'
ptfs_stop /mnt/ptf sem-pt

say ""
say "=== 5. the ioctl without CAP_SYS_ADMIN"
ptfs_start "--passthrough --drop-cap" /mnt/ext4/img /mnt/ptf nocap-pt
run dd if=/mnt/ptf/disk of=/dev/null bs=4k count=1
say "(exit $?)"
ptfs_stop /mnt/ptf nocap-pt

say ""
say "=== summary"
grep '^RESULT' "$res"
