"""libvirt `bd` pool benchmarks: ratios measured side by side in one guest run.

Run with `bench/run libvirt` (one test guest, /dev/vda scratch disk). The
patched libvirtd (pool-backend/libvirt/build-libvirt) serves both a bd pool and
a stock `logical` pool, each on its own VG (two loop devices on /dev/vda).
Absolute times under TCG mean little; ratios from the same run do.
  1. virsh vol-create-as on bd over a bare `lvcreate` of a thin LV
  2. virsh vol-clone on bd over virsh vol-clone on a logical pool, for volumes
     with 256 MiB and 1 GiB written
  3. virsh pool-refresh of a bd pool with N volumes (default 1000) over one `lvs`
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
from bdlibvirt import BDCTL, Daemon, libvirt_prefix  # noqa: E402
from core_bench import bulk_metadata, paired  # noqa: E402  (bulk setup; side-by-side medians)

BD_POOL, BD_VG = "bench", "benchvg"
LVM_POOL, LVM_VG = "stock", "stockvg"
MiB = 1 << 20


def sh(*argv, stdin=None):
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, input=stdin)
    if r.returncode:
        raise SystemExit(f"{' '.join(map(str, argv))} failed: {r.stderr}")
    return r.stdout


def timed(argv, after=None):
    t0 = time.perf_counter()
    sh(*argv)
    t = time.perf_counter() - t0
    if after:
        after()
    return t


def median_time(make_argv, n, after=None):
    """Median over n runs of make_argv(i); after(i), untimed, runs after each."""
    return statistics.median(timed(make_argv(i), after and (lambda i=i: after(i)))
                             for i in range(n))


def report(label, ours, base):
    print(f"{label:<62} {ours * 1000:8.0f} ms {base * 1000:8.0f} ms   ratio {ours / base:6.3f}x",
          flush=True)


class Bench:
    def __init__(self, virsh, pid=None):
        self.virsh = virsh
        self.pid = pid   # libvirtd's, to see which programs it runs

    def v(self, *args):
        return sh(self.virsh, "-c", "storage:///system", *args)

    def setup(self, disk, bd_size, lvm_size):
        # two PVs on one scratch disk; the first MiB stays unused so that LVM
        # finds no label on the disk itself
        bd_dev = sh("losetup", "--find", "--show", "-o", str(MiB), "--sizelimit", str(bd_size),
                    disk).strip()
        lvm_dev = sh("losetup", "--find", "--show", "-o", str(MiB + bd_size), "--sizelimit",
                     str(lvm_size), disk).strip()
        # room in the VG metadata for the 1,000 volumes of part 3, as core_bench does
        sh("pvcreate", "-q", "--metadatasize", "64m", bd_dev)
        sh("vgcreate", "-q", BD_VG, bd_dev)
        sh(BDCTL, "export", "create", BD_POOL, "--vg", BD_VG, "--size", str(bd_size - 512 * MiB))
        self.thinpool = json.loads(sh(BDCTL, "--json", "export", "info", BD_POOL))["thinpool"]
        # (export create sizes the thin-pool metadata for thousands of volumes)
        d = "/run/bench-xml"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/bd.xml", "w") as f:
            f.write(sh(BDCTL, "pool-xml", BD_POOL))
        with open(f"{d}/lvm.xml", "w") as f:
            f.write(f"<pool type='logical'><name>{LVM_POOL}</name><source>"
                    f"<device path='{lvm_dev}'/><name>{LVM_VG}</name><format type='lvm2'/>"
                    f"</source><target><path>/dev/{LVM_VG}</path></target></pool>")
        self.v("pool-define", f"{d}/bd.xml")
        self.v("pool-start", BD_POOL)
        self.v("pool-define", f"{d}/lvm.xml")
        self.v("pool-build", LVM_POOL)          # libvirt's own pvcreate + vgcreate
        self.v("pool-start", LVM_POOL)

    def path(self, pool, vol):
        return self.v("vol-path", vol, "--pool", pool).strip()

    def create(self, n):
        print(f"\n1. create latency, median of {n}{'bd':>26} {'bare LVM':>11}")
        bd = median_time(lambda i: [self.virsh, "-c", "storage:///system", "vol-create-as",
                                    BD_POOL, f"lat/c{i}.img", "64M"], n)
        raw = median_time(lambda i: ["lvcreate", "-q", "--type", "thin", "-V", "64M",
                                     "--thinpool", self.thinpool, "-n", f"rawc{i}", BD_VG], n)
        report("virsh vol-create-as (bd, 64M)  vs lvcreate --type thin", bd, raw)
        if self.pid:
            print("   programs libvirtd ran for one vol-create-as: " + ", ".join(execs(
                self.pid, [self.virsh, "-c", "storage:///system", "vol-create-as", BD_POOL,
                           "lat/traced.img", "64M"])), flush=True)

    def clone(self, n, sizes):
        print(f"\n2. vol-clone, median of {n}{'bd':>32} {'logical':>11}")
        for mib in sizes:
            src = f"src{mib}.img"
            self.v("vol-create-as", BD_POOL, src, f"{mib}M")
            self.v("vol-create-as", LVM_POOL, src, f"{mib}M")
            bd_dev, lvm_dev = self.path(BD_POOL, src), self.path(LVM_POOL, src)
            # the same data in both: random bytes over the whole volume
            sh("dd", "if=/dev/urandom", f"of={bd_dev}", "bs=1M", f"count={mib}", "oflag=direct")
            sh("dd", f"if={bd_dev}", f"of={lvm_dev}", "bs=1M", f"count={mib}", "iflag=direct",
               "oflag=direct")

            def clone_argv(pool):
                return lambda i: [self.virsh, "-c", "storage:///system", "vol-clone", src,
                                  f"k{mib}-{i}.img", "--pool", pool]

            def drop(pool):   # clones are removed, untimed, so the VGs never fill up
                return lambda i: self.v("vol-delete", f"k{mib}-{i}.img", "--pool", pool)

            src_lv = json.loads(sh(BDCTL, "--json", "info", f"{BD_POOL}:/{src}"))["lv"]
            bd, bare = paired(clone_argv(BD_POOL),
                              lambda i: ["lvcreate", "-q", "-s", "-kn", "-ay", "-n",
                                         f"rawk{mib}-{i}", f"{BD_VG}/{src_lv}"], n,
                              drop(BD_POOL))
            lvm = median_time(clone_argv(LVM_POOL), n, drop(LVM_POOL))
            label = f"{mib} MiB" if mib < 1024 else f"{mib // 1024} GiB"
            report(f"virsh vol-clone, {label} written: bd vs lvcreate -s", bd, bare)
            report(f"virsh vol-clone, {label} written: bd vs logical pool", bd, lvm)
            if self.pid:
                print("   programs libvirtd ran for one vol-clone: " + ", ".join(
                    execs(self.pid, clone_argv(BD_POOL)(n))), flush=True)
                drop(BD_POOL)(n)
            self.v("vol-delete", src, "--pool", LVM_POOL)

    def refresh(self, count, n):
        print(f"\n3. pool-refresh with {count} volumes, median of {n}")
        have = len(json.loads(sh(BDCTL, "--json", "list", BD_POOL))["volumes"])
        # Bulk setup straight into the VG's metadata, with bd's tags (as core_bench:
        # 1000 lvcreates would take most of an hour under TCG); bd creates are
        # measured in part 1.
        t0 = time.perf_counter()
        bulk_metadata(have, count, BD_VG, self.thinpool)
        print(f"   (setup: {count - have} inactive thin LVs through vgcfgrestore in "
              f"{time.perf_counter() - t0:.0f} s)", flush=True)
        self.v("pool-refresh", BD_POOL)
        lvs_count = sum("bd.path=" in line for line in
                        sh("lvs", "--noheadings", "-o", "lv_tags", BD_VG).splitlines())
        bd_count = len(json.loads(sh(BDCTL, "--json", "list", BD_POOL, "-l"))["volumes"])
        rows = self.v("vol-list", BD_POOL).splitlines()
        got = len([r for r in rows[2:] if r.strip()])      # after the header and its rule
        print(f"   (volumes: {lvs_count} bd-tagged LVs, plus part 1's bare thin LVs; "
              f"{bd_count} in bdctl list, {got} in virsh vol-list)", flush=True)
        if not got >= count == bd_count:
            print(f"   WARNING: expected {count} volumes everywhere", flush=True)
        refresh = median_time(lambda i: [self.virsh, "-c", "storage:///system", "pool-refresh",
                                         BD_POOL], n)
        lvs = median_time(lambda i: ["lvs", "--reportformat", "json", BD_VG], n)
        report(f"virsh pool-refresh ({got} volumes)  vs lvs {BD_VG}", refresh, lvs)
        if self.pid:
            print("   programs libvirtd ran for one pool-refresh: " + ", ".join(execs(
                self.pid, [self.virsh, "-c", "storage:///system", "pool-refresh", BD_POOL])),
                flush=True)
        bdctl = median_time(lambda i: [BDCTL, "--json", "list", BD_POOL, "-l"], n)
        report("   (for reference: bdctl --json list -l  vs lvs)", bdctl, lvs)


def execs(pid, argv):
    """The programs `pid` (libvirtd) starts while argv runs, seen by strace:
    where a virsh command's time goes is mostly in which processes it costs."""
    log = "/tmp/bench-execs"
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=execve", "-e", "signal=none",
                               "-p", str(pid), "-o", log])
    time.sleep(2)  # attached to every thread
    sh(*argv)
    tracer.send_signal(2)
    tracer.wait()
    out = []
    for line in open(log):
        if "execve(" in line and line.rstrip().endswith("= 0"):
            args = line.split("[", 1)[1].split("]", 1)[0].replace('"', "").split(", ")
            out.append(" ".join([os.path.basename(args[0])] + [a for a in args[1:3]]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--disk", default="/dev/vda")
    ap.add_argument("--volumes", type=int, default=1000)
    ap.add_argument("-n", type=int, default=5, help="runs per create/refresh median")
    ap.add_argument("--clone-runs", type=int, default=3, help="runs per clone median")
    ap.add_argument("--only", choices=["create", "clone", "refresh"])
    args = ap.parse_args()
    disk_size = int(sh("blockdev", "--getsize64", args.disk))
    if disk_size < 6 << 30:
        raise SystemExit(f"{args.disk} is {disk_size >> 20} MiB; the benchmark needs 6 GiB or more")
    bd_size = 3 << 30
    lvm_size = disk_size - bd_size - 2 * MiB

    daemon = Daemon(libvirt_prefix())
    daemon.start()
    try:
        b = Bench(daemon.virsh.binary, daemon.pid)
        b.setup(args.disk, bd_size, lvm_size)
        print(f"libvirt bd pool benchmarks (guest: {os.uname().release}, TCG; patched "
              f"libvirtd {daemon.prefix}; compare ratios, not times)", flush=True)
        for name, step in [("create", lambda: b.create(args.n)),
                           ("clone", lambda: b.clone(args.clone_runs, [256, 1024])),
                           ("refresh", lambda: b.refresh(args.volumes, args.n))]:
            if args.only in (None, name):
                step()
    finally:
        daemon.stop()


if __name__ == "__main__":
    main()
