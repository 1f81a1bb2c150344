"""bdfs benchmarks: ratios measured side by side in one guest run (bench/run bdfs).

Absolute times under TCG mean little; ratios from the same run do.
  1. fio through bdfs over fio on the raw LV: sequential 1 MiB write and read,
     4 KiB random read one at a time and 16 in flight (O_DIRECT both sides,
     same volume size, same job).
  2. `cp` of a file with 1 GiB written, through bdfs, over `bdctl clone` of it.
  3. Stock-libvirt mode: Debian's libvirtd with a `dir` pool on the mount;
     `virsh vol-clone` of that file (libvirt's own data copy) over `cp` of it.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "libvirt"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from bdlibvirt import Daemon  # noqa: E402
from core_bench import sh, timed  # noqa: E402
BDCTL = os.path.join(ROOT, "build", "virsh-ext", "bdctl")
BDFS = os.path.join(ROOT, "build", "fuse-view", "bdfs")
VG, EXPORT, MNT = "benchvg", "bench", "/mnt/bdfs-bench"


def device(path):
    return json.loads(sh(BDCTL, "--json", "info", f"{EXPORT}:{path}"))["device"]


def fio(target, rw, bs, size, runtime, depth=1):
    timing = [f"--runtime={runtime}", "--time_based"] if rw == "randread" else []
    engine = ["--ioengine=psync"] if depth == 1 else ["--ioengine=libaio", f"--iodepth={depth}"]
    out = sh("fio", "--name=b", f"--filename={target}", f"--rw={rw}", f"--bs={bs}",
             f"--size={size}", "--direct=1", *engine, "--numjobs=1", *timing,
             "--output-format=json")
    job = json.loads(out)["jobs"][0]
    side = job["write"] if "write" in rw else job["read"]
    return side["bw_bytes"], side["iops"]


def report(label, ours, base, unit):
    print(f"{label:<44} {ours:12.1f} {base:12.1f} {unit:<6} ratio {ours / base:5.2f}x", flush=True)


def fio_ratios(size, runtime):
    print(f"\n1. fio, O_DIRECT, psync (libaio for 16 in flight), {size} ({'bdfs':>12} {'raw LV':>12})")
    sh(BDCTL, "create", f"{EXPORT}:/fio/raw.img", size)
    sh("truncate", "-s", size, f"{MNT}/fio-bdfs.img")
    raw, fuse = device("/fio/raw.img"), f"{MNT}/fio-bdfs.img"
    for label, rw, bs, depth in (("sequential write, 1 MiB", "write", "1M", 1),
                                 ("sequential read, 1 MiB", "read", "1M", 1),
                                 ("random read, 4 KiB", "randread", "4k", 1),
                                 ("random read, 4 KiB, 16 in flight", "randread", "4k", 16)):
        ours, base = (fio(fuse, rw, bs, size, runtime, depth),
                      fio(raw, rw, bs, size, runtime, depth))
        if bs == "1M":
            report(label + " (MiB/s)", ours[0] / 2**20, base[0] / 2**20, "MiB/s")
        else:
            report(label + " (IOPS)", ours[1], base[1], "IOPS")


def copy_ratio(n):
    print(f"\n2. a file with 1 GiB written, median of {n}")
    sh("truncate", "-s", "1G", f"{MNT}/big.img")
    sh("dd", "if=/dev/urandom", f"of={MNT}/big.img", "bs=1M", "count=1024", "oflag=direct",
       "conv=notrunc")
    cp = statistics.median(timed("cp", f"{MNT}/big.img", f"{MNT}/cp{i}.img") for i in range(n))
    clone = statistics.median(timed(BDCTL, "clone", f"{EXPORT}:/big.img", f"/clone{i}.img")
                              for i in range(n))
    print(f"{'cp through bdfs  vs bdctl clone':<44} {cp * 1000:9.0f} ms {clone * 1000:9.0f} ms"
          f"   ratio {cp / clone:5.2f}x", flush=True)
    sh("cmp", f"{MNT}/big.img", f"{MNT}/cp0.img")
    return cp


def sparse_ratios(n):
    print(f"\n4. a 64 MiB file with 4 MiB written, median of {n}")
    sh("truncate", "-s", "64M", f"{MNT}/sparse.img")
    sh("dd", "if=/dev/urandom", f"of={MNT}/sparse.img", "bs=1M", "count=4", "oflag=direct",
       "conv=notrunc")

    def median(make):
        return statistics.median(timed(*make(i)) for i in range(n))
    cp = median(lambda i: ["cp", f"{MNT}/sparse.img", f"{MNT}/scp{i}.img"])
    conv = median(lambda i: ["qemu-img", "convert", "-f", "raw", "-O", "raw", f"{MNT}/sparse.img",
                             f"{MNT}/sconv{i}.img"])
    clone = median(lambda i: [BDCTL, "clone", f"{EXPORT}:/sparse.img", f"/sclone{i}.img"])
    full = median(lambda i: ["dd", f"if={MNT}/sparse.img", "of=/dev/null", "bs=1M"])
    for label, ours, base in (("cp through bdfs  vs bdctl clone", cp, clone),
                              ("qemu-img convert in bdfs  vs bdctl clone", conv, clone),
                              ("cp through bdfs  vs a full read (dd)", cp, full),
                              ("qemu-img convert in bdfs  vs a full read", conv, full)):
        print(f"{label:<44} {ours * 1000:9.0f} ms {base * 1000:9.0f} ms"
              f"   ratio {ours / base:5.2f}x", flush=True)
    sh("cmp", f"{MNT}/sparse.img", f"{MNT}/scp0.img")
    sh("cmp", f"{MNT}/sparse.img", f"{MNT}/sconv0.img")


def stock_libvirt_ratio(n, cp):
    print(f"\n3. stock libvirtd, dir pool on the mount, the same file, median of {n}")
    daemon = Daemon("/usr")
    daemon.start()
    virsh = daemon.virsh
    try:
        virsh("pool-define-as", "benchdir", "dir", "--target", MNT)
        virsh("pool-start", "benchdir")
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            virsh("vol-clone", "big.img", f"lv{i}.img", "--pool", "benchdir", timeout=1800)
            times.append(time.perf_counter() - t0)
            if i == 0:
                sh("cmp", f"{MNT}/big.img", f"{MNT}/lv0.img")
            virsh("vol-delete", f"lv{i}.img", "--pool", "benchdir")  # frees the pool again
        vc = statistics.median(times)
        print(f"{'virsh vol-clone (dir pool)  vs cp in the mount':<44} {vc * 1000:9.0f} ms "
              f"{cp * 1000:9.0f} ms   ratio {vc / cp:5.2f}x", flush=True)
    finally:
        virsh("pool-destroy", "benchdir", rc=None)
        virsh("pool-undefine", "benchdir", rc=None)
        daemon.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--disk", default="/dev/vda")
    ap.add_argument("--size", default="1G", help="fio volume size")
    ap.add_argument("--runtime", type=int, default=20, help="seconds for the random read")
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--only", choices=["fio", "copy", "sparse"],
                    help="one part (copy includes the stock-libvirt part, which reuses its file)")
    args = ap.parse_args()
    sh("pvcreate", "-q", args.disk)
    sh("vgcreate", "-q", VG, args.disk)
    sh(BDCTL, "export", "create", EXPORT, "--vg", VG, "--size", "6G")
    os.makedirs(MNT, exist_ok=True)
    sh(BDFS, EXPORT, MNT, "-o", "allow_other")
    print(f"bdfs benchmarks (guest: {os.uname().release}, TCG; compare ratios, not times)")
    try:
        if args.only in (None, "fio"):
            fio_ratios(args.size, args.runtime)
        if args.only in (None, "copy"):
            cp = copy_ratio(args.n)
            stock_libvirt_ratio(args.n, cp)
        if args.only in (None, "sparse"):
            sparse_ratios(args.n)
    finally:
        subprocess.run(["fusermount3", "-u", MNT])


if __name__ == "__main__":
    main()
