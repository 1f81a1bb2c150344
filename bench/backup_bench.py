"""bd backup benchmark: changed blocks against whole copies, in one guest run.

A 4 GiB thin volume full of data is sent whole once; then 1% of it is
rewritten in scattered chunks, and the change is sent as an incremental
stream. Printed side by side, from the same run:
  - the incremental stream's size over the bytes that changed (goal <= 1.1x);
  - its time over a full send's (goal <= 5%), and over a `dd conv=sparse`
    copy of the volume (what Proxmox's lvmthin export does);
  - the time of `bdctl diff`, which reads mappings and no data;
  - receive: the full stream into a new volume, then the incremental one.
Streams and the dd copy go to an ext4 file system on a second disk.
"""
import argparse
import json
import os
import random
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BDCTL = os.path.join(ROOT, "build", "virsh-ext", "bdctl")
VG, EXPORT, OUT = "benchvg", "bench", "/mnt/bench-out"


def sh(*argv, stdin=None, stdout=subprocess.PIPE):
    r = subprocess.run(argv, stdout=stdout, stderr=subprocess.PIPE, stdin=stdin)
    if r.returncode:
        raise SystemExit(f"{' '.join(argv)} failed: {r.stderr.decode()}")
    return r


def timed(*argv, **kw):
    t0 = time.perf_counter()
    r = sh(*argv, **kw)
    return time.perf_counter() - t0, r


def send(args, name):
    path = f"{OUT}/{name}.bdstream"
    sh("sync")
    with open(path, "wb") as f:
        t, r = timed(BDCTL, "--json", "send", f"{EXPORT}:/vm.img", *args, stdout=f)
        os.fsync(f.fileno())
    return t, json.loads(r.stderr), path


def receive(path, target):
    with open(path, "rb") as f:
        t, r = timed(BDCTL, "--json", "receive", f"{EXPORT}:{target}", stdin=f)
    return t, json.loads(r.stdout)


def mib(n):
    return f"{n / (1 << 20):9.1f} MiB"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--disk", default="/dev/vda")
    ap.add_argument("--out-disk", default="/dev/vdb")
    ap.add_argument("--size-gib", type=int, default=4)
    ap.add_argument("--percent", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    size = args.size_gib << 30
    sh("pvcreate", "-q", args.disk)
    sh("vgcreate", "-q", VG, args.disk)
    sh(BDCTL, "export", "create", EXPORT, "--vg", VG)
    sh("modprobe", "ext4")  # the guest's initramfs loads only what the tests need
    sh("mkfs.ext4", "-q", args.out_disk)
    os.makedirs(OUT, exist_ok=True)
    sh("mount", args.out_disk, OUT)
    chunk = json.loads(sh(BDCTL, "--json", "export", "info", EXPORT).stdout)["chunk_size"]
    print(f"bd backup benchmark (guest: {os.uname().release}, TCG; compare ratios, not "
          f"times): a {args.size_gib} GiB volume, {args.percent}% of it changed, pool chunk "
          f"{chunk // 1024} KiB", flush=True)

    dev = json.loads(sh(BDCTL, "--json", "create", f"{EXPORT}:/vm.img",
                        f"{args.size_gib}G").stdout)["device"]
    t, _ = timed("dd", "if=/dev/urandom", f"of={dev}", "bs=4M", "oflag=direct",
                 f"count={size >> 22}")
    print(f"   filled with random data in {t:.1f} s", flush=True)

    t_full, full, full_path = send(["--snapshot", "n1", "--incremental"], "full")
    snap = full["snapshot"]["device"]
    t_dd, _ = timed("dd", f"if={snap}", f"of={OUT}/dd.img", "bs=4M", "conv=sparse,fsync")

    # 1% rewritten: whole chunks at random places, as a guest's writes land.
    rng = random.Random(args.seed)
    chunks = size // chunk
    picked = sorted(rng.sample(range(chunks), int(chunks * args.percent / 100)))
    with open(dev, "r+b", buffering=0) as f:
        for c in picked:
            f.seek(c * chunk)
            f.write(os.urandom(chunk))
        os.fsync(f.fileno())
    changed = len(picked) * chunk
    sh(BDCTL, "snapshot", f"{EXPORT}:/vm.img", "n2")
    t_diff, r = timed(BDCTL, "--json", "diff", f"{EXPORT}:/vm.img", "--from", "n1", "--to", "n2")
    d = json.loads(r.stdout)
    found = d["changed_bytes"] + d["added_bytes"] + d["removed_bytes"]
    t_inc, inc, inc_path = send(["--snapshot", "n2", "--incremental"], "inc")
    t_rfull, _ = receive(full_path, "/copy.img")
    t_rinc, got = receive(inc_path, "/copy.img")
    t0 = time.perf_counter()
    same = subprocess.run(["cmp", got["volume"]["device"], inc["snapshot"]["device"]],
                          capture_output=True).returncode == 0
    t_cmp = time.perf_counter() - t0

    print(f"\n{'':<44}{'time':>10}{'bytes':>16}")
    print(f"{'dd conv=sparse of the volume':<44}{t_dd:9.1f}s{mib(os.path.getsize(OUT + '/dd.img')):>16}")
    print(f"{'full send (--snapshot n1)':<44}{t_full:9.1f}s{mib(full['stream_bytes']):>16}")
    print(f"{'bdctl diff --from n1 --to n2':<44}{t_diff:9.2f}s{mib(found):>16}  changed ranges")
    print(f"{'incremental send (n1 -> n2)':<44}{t_inc:9.2f}s{mib(inc['stream_bytes']):>16}")
    print(f"{'receive, full stream into a new volume':<44}{t_rfull:9.1f}s")
    print(f"{'receive, incremental stream':<44}{t_rinc:9.2f}s")
    print(f"\n   data changed: {mib(changed)} in {len(picked)} chunks; diff found "
          f"{mib(found)}", flush=True)
    print(f"   incremental stream / data changed        {inc['stream_bytes'] / changed:6.3f}x"
          f"   (goal <= 1.1x)")
    print(f"   incremental send time / full send time   {100 * t_inc / t_full:6.2f}%"
          f"   (goal <= 5%)")
    print(f"   incremental send time / dd conv=sparse   {100 * t_inc / t_dd:6.2f}%")
    print(f"   received volume equals snapshot n2: {'yes' if same else 'NO'} "
          f"(cmp {t_cmp:.1f} s)")


if __name__ == "__main__":
    main()
