"""bd core benchmarks: ratios measured side by side in one guest run.

Absolute times under TCG mean little; ratios from the same run do.
  1. bdctl create / clone / snapshot latency over the bare LVM command
  2. clone time of a volume with 1 GiB written over one with 16 MiB written
  3. bdctl list with N volumes (default 1000) over one `lvs` of the VG, and
     bdctl create in that export over lvcreate
"""
import argparse
import json
import os
import random
import re
import string
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BDCTL = os.path.join(ROOT, "build", "virsh-ext", "bdctl")
VG, EXPORT = "benchvg", "bench"


def sh(*argv, stdin=None):
    r = subprocess.run(argv, capture_output=True, text=True, input=stdin)
    if r.returncode:
        raise SystemExit(f"{' '.join(argv)} failed: {r.stderr}")
    return r.stdout


def timed(*argv):
    t0 = time.perf_counter()
    sh(*argv)
    return time.perf_counter() - t0


def paired(ours, base, n, after=None):
    """Medians of n alternating runs, so both sides see the same machine load;
    after(i), untimed, follows each of ours (to remove what it made)."""
    a, b = [], []
    for i in range(n):
        a.append(timed(*ours(i)))
        if after:
            after(i)
        b.append(timed(*base(i)))
    return statistics.median(a), statistics.median(b)


def report(label, ours, base):
    print(f"{label:<58} {ours * 1000:8.0f} ms {base * 1000:8.0f} ms   ratio {ours / base:5.2f}x",
          flush=True)


def latency(n):
    print(f"\n1. latency, median of {n} ({'bd':>8} {'bare LVM':>11})")
    report("bdctl create (thin, 64M)  vs lvcreate --type thin", *paired(
        lambda i: [BDCTL, "create", f"{EXPORT}:/lat/c{i}.img", "64M"],
        lambda i: ["lvcreate", "-q", "--type", "thin", "-V", "64M", "--thinpool", "pool",
                   "-n", f"rawc{i}", VG], n))
    report("bdctl clone               vs lvcreate -s (writable)", *paired(
        lambda i: [BDCTL, "clone", f"{EXPORT}:/lat/c0.img", f"/lat/k{i}.img"],
        lambda i: ["lvcreate", "-q", "-s", "-kn", "-ay", "-n", f"rawk{i}", f"{VG}/rawc0"], n))
    report("bdctl snapshot            vs lvcreate -s -pr", *paired(
        lambda i: [BDCTL, "snapshot", f"{EXPORT}:/lat/c0.img", f"s{i}"],
        lambda i: ["lvcreate", "-q", "-s", "-pr", "-kn", "-ay", "-n", f"raws{i}", f"{VG}/rawc0"],
        n))
    print(f"   profile of a create: {profile([BDCTL, 'create', f'{EXPORT}:/lat/p.img', '64M'])}")


def write_mib(path, mib):
    dev = json.loads(sh(BDCTL, "--json", "info", f"{EXPORT}:{path}"))["device"]
    sh("dd", "if=/dev/urandom", f"of={dev}", "bs=1M", f"count={mib}", "oflag=direct")


def flatness(n):
    print(f"\n2. clone time vs data written, median of {n}")
    sh(BDCTL, "create", f"{EXPORT}:/flat/big.img", "2G")
    sh(BDCTL, "create", f"{EXPORT}:/flat/small.img", "2G")
    write_mib("/flat/big.img", 1024)
    write_mib("/flat/small.img", 16)
    report("bdctl clone, 1 GiB written vs 16 MiB written", *paired(
        lambda i: [BDCTL, "clone", f"{EXPORT}:/flat/big.img", f"/flat/b{i}"],
        lambda i: [BDCTL, "clone", f"{EXPORT}:/flat/small.img", f"/flat/s{i}"], n))


def lv_name(path):
    """Mirror of names.cc lv_name_for_path for plain ASCII paths (bench data only)."""
    h = 0xcbf29ce484222325
    for c in path.encode():
        h = ((h ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    slug = path.replace("/", "+")[:48]
    return f"{slug}.{h & 0xffffffffffff:012x}"


def uuid():
    chars = string.ascii_letters + string.digits
    return "-".join("".join(random.choice(chars) for _ in range(n)) for n in (6, 4, 4, 4, 4, 4, 6))


def bulk_metadata(first, last, vg=VG, pool="pool"):
    """Thin LVs written straight into the VG's metadata (vgcfgbackup, edit,
    vgcfgrestore --force): one metadata commit for thousands of LVs, where an
    lvcreate each rewrites the whole metadata every time (hours under TCG). They are
    inactive (the pool's kernel metadata never heard of them), which `lvs` and
    `bdctl list` report as they would any inactive thin LV; nothing activates them."""
    meta = "/tmp/bench-meta.vg"
    sh("vgcfgbackup", "-q", "-f", meta, vg)
    text = open(meta).read()
    ids = [int(m) for m in re.findall(r"device_id = (\d+)", text)]
    next_id = max(ids, default=0) + 1
    lvs = []
    for i in range(first, last):
        p = f"bulk/vol{i:05d}.img"
        lvs.append(f"""
{lv_name(p)} {{
id = "{uuid()}"
status = ["READ", "WRITE", "VISIBLE"]
flags = []
tags = ["bd.v=1", "bd.path={p}", "bd.id={i:016x}"]
creation_time = 1764115200
creation_host = "bench"
segment_count = 1
segment1 {{
start_extent = 0
extent_count = 1
type = "thin"
thin_pool = "{pool}"
transaction_id = 0
device_id = {next_id + i - first}
}}
}}""")
    anchor = "logical_volumes {"
    at = text.index(anchor) + len(anchor)
    open(meta, "w").write(text[:at] + "".join(lvs) + text[at:])
    sh("vgchange", "-q", "-an", vg)
    sh("vgcfgrestore", "-q", "--force", "-f", meta, vg)
    sh("lvchange", "-q", "-ay", f"{vg}/{pool}")


def profile(argv):
    """One BD_TRACE run: where bdctl's time goes, since its process started."""
    r = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, BD_TRACE="1"))
    steps = re.findall(r"^bd: \+(\d+) ms (.*)$", r.stderr, re.M)
    return ", ".join(f"{what.split(' --')[0][:40]} at {ms} ms" for ms, what in steps
                     if not what.startswith("run:"))


def listing(counts):
    for count in counts:
        have = json.loads(sh(BDCTL, "--json", "export", "info", EXPORT))["volumes"]
        t0 = time.perf_counter()
        if count - have > 0:
            bulk_metadata(have, count)
        setup = time.perf_counter() - t0
        print(f"\n3. listing {count} volumes, median of 5 (setup of {max(0, count - have)} "
              f"inactive thin LVs through vgcfgrestore: {setup:.0f} s)", flush=True)
        t0 = time.perf_counter()
        got = len(json.loads(sh(BDCTL, "--json", "list", EXPORT))["volumes"])
        print(f"   (first listing, making {got} links in the volume tree: "
              f"{(time.perf_counter() - t0) * 1000:.0f} ms)")
        assert got >= count, f"expected {count} volumes, listed {got}"
        report(f"bdctl list ({got} volumes)  vs lvs {VG}", *paired(
            lambda i: [BDCTL, "--json", "list", EXPORT],
            lambda i: ["lvs", "--reportformat", "json", VG], 5))
        print(f"   profile: {profile([BDCTL, '--json', 'list', EXPORT])}")
        report(f"bdctl create ({got} volumes) vs lvcreate --type thin", *paired(
            lambda i: [BDCTL, "create", f"{EXPORT}:/scale{count}/c{i}.img", "4M"],
            lambda i: ["lvcreate", "-q", "--type", "thin", "-V", "4M", "--thinpool", "pool",
                       "-n", f"rawscale{count}x{i}", VG], 5))
        print(f"   profile: {profile([BDCTL, 'create', f'{EXPORT}:/scale{count}/p.img', '4M'])}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--disk", default="/dev/vda")
    ap.add_argument("--volumes", default="1000",
                    help="listing sizes, comma-separated (e.g. 100,1000,10000)")
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--only", choices=["latency", "flatness", "listing"])
    args = ap.parse_args()
    sh("pvcreate", "-q", "--metadatasize", "64m", args.disk)
    sh("vgcreate", "-q", VG, args.disk)
    sh(BDCTL, "export", "create", EXPORT, "--vg", VG, "--size", "6G")
    print(f"bd core benchmarks (guest: {os.uname().release}, TCG; compare ratios, not times)")
    for name, step in [("latency", lambda: latency(args.n)), ("flatness", lambda: flatness(args.n)),
                       ("listing", lambda: listing(sorted(int(n) for n in args.volumes.split(","))))]:
        if args.only in (None, name):
            step()


if __name__ == "__main__":
    main()
