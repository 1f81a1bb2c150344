"""Several hosts on one shared VG (docs/ARCHITECTURE.md, "Several hosts").

Runs on the host, not in a guest: it boots two test guests that share one
raw disk (tests/vm/run --shared-disk), each its own host of the cluster with
its own sanlock, lvmlockd and host id (tests/cluster/host-up), and drives them
through tests/cluster/agent. The tests run in order, each on what the one
before left, as one story:

1. Host A makes the shared VG and its export; host B joins and makes its own.
2. Both change their own exports at once; each lists both.
3. B cannot change A's export, through bd or through LVM.
4. A loses power while writing.
5. B takes A's export over once A's lease has expired; every volume holds
   what A wrote before the crash (the writer's completed writes included),
   and B can change the export.
6. A comes back and keeps its hands off the export it lost.
"""
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import tempfile
import time
import types

import pytest

from cluster import ROOT, Guest

BUILD = os.environ.get("BD_BUILD_DIR", os.path.join(ROOT, "build"))
BDCTL = os.path.join(BUILD, "virsh-ext", "bdctl")
VG = "bdvg"
WRITER_BLOCKS = 32
def _load_writer():
    """tests/cluster/writer, a script without .py, as a module: its block_data()."""
    loader = importlib.machinery.SourceFileLoader(
        "bd_writer", os.path.join(ROOT, "tests", "cluster", "writer"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


writer = _load_writer()

# What each step leaves for the next.
state = types.SimpleNamespace(a=None, b=None, a2=None, work=None, sums={}, ids={})


@pytest.fixture(scope="module", autouse=True)
def cluster():
    if not os.access(BDCTL, os.X_OK):
        raise pytest.UsageError(f"{BDCTL} is not built: run `meson setup build && ninja -C build`")
    parent = os.environ.get("BD_CLUSTER_WORK")
    state.work = tempfile.mkdtemp(prefix="bd-cluster.", dir=parent)
    disk = os.path.join(state.work, "shared.raw")
    with open(disk, "w") as f:
        f.truncate(4 << 30)
    state.disk = disk
    try:
        yield state
    finally:
        for g in (state.a, state.b, state.a2):
            if g is not None:
                try:
                    g.shutdown()
                except Exception:
                    pass
        out = os.environ.get("BD_CLUSTER_LOGS")
        if out:  # the guests' consoles and the writer's log, for a failed run
            os.makedirs(out, exist_ok=True)
            for leaf in os.listdir(state.work):
                if leaf.endswith(".log"):
                    shutil.copy(os.path.join(state.work, leaf), out)
        shutil.rmtree(state.work, ignore_errors=True)


def bd(guest, *args, check=True, timeout=600):
    """bdctl ARGS on a guest: the Result, with .json parsed when --json."""
    cmd = " ".join([BDCTL] + [f"'{a}'" for a in args])
    r = guest.sh(cmd, check=check, timeout=timeout)
    r.json = None
    if "--json" in args and r.out.strip():
        r.json = json.loads(r.out)
    return r


def exports(guest):
    return {e["name"]: e for e in bd(guest, "--json", "export", "list").json["exports"]}


def volume_sums(guest, export):
    """Every volume of the export: path -> sha256 of its device, read on
    `guest` (which must serve the export)."""
    vols = bd(guest, "--json", "list", f"{export}:").json["volumes"]
    script = "; ".join(f"echo {v['path']} $(sha256sum < {v['device']} | cut -c1-64)"
                       for v in vols)
    out = guest.sh(script).out
    return dict(line.split() for line in out.splitlines())


def test_each_host_makes_its_own_export_in_one_shared_vg():
    # Kept before they boot, so that the fixture stops them whatever happens.
    a = state.a = Guest("A", state.work, state.disk)
    b = state.b = Guest("B", state.work, state.disk)
    a.boot()
    b.boot()
    a.sh("tests/cluster/host-up 1")
    b.sh("tests/cluster/host-up 2")
    made = bd(a, "--json", "export", "create", "hosta", "--vg", VG, "--pv", "/dev/vda", "--shared",
              "--size", "1G").json
    assert (made["vg"], made["thinpool"], made["shared"], made["owner"], made["owned"]) == \
        (VG, "hosta", True, "1", True)
    assert made["lock_type"] == "sanlock"
    assert made["tree"] == f"/dev/disk/by-bd/{VG}@hosta"
    # B joins the VG's lock space, as lvmlocks.service does at boot.
    b.sh(f"tests/cluster/lockstart {VG}")
    made = bd(b, "--json", "export", "create", "hostb", "--vg", VG, "--shared", "--size", "1G").json
    assert (made["thinpool"], made["owner"], made["owned"]) == ("hostb", "2", True)
    # One export per name in the whole VG, and a shared VG wants --shared.
    r = bd(b, "export", "create", "hosta", "--vg", VG, "--shared", "--size", "100M", check=False)
    assert r.rc == 4 and "already exists" in r.err, r
    r = bd(b, "export", "create", "other", "--vg", VG, "--size", "100M", check=False)
    assert r.rc == 2 and "--shared" in r.err, r
    # Each lists both; each serves only its own.
    for g, mine, theirs, owner in ((a, "hosta", "hostb", "2"), (b, "hostb", "hosta", "1")):
        seen = exports(g)
        assert {mine, theirs} <= set(seen), seen
        assert seen[mine]["owned"] is True
        assert seen[theirs]["owned"] is False and seen[theirs]["owner"] == owner
    # The LVM view agrees: each pool is active on its own host only.
    for g, active, inactive in ((a, "hosta", "hostb"), (b, "hostb", "hosta")):
        attrs = dict(line.split() for line in g.sh(
            f"lvs --noheadings -o lv_name,lv_attr {VG}/{active} {VG}/{inactive}").out.splitlines())
        assert attrs[active][4] == "a" and attrs[inactive][4] == "-", attrs


BURST = """
set -e
for i in 1 2 3 4 5; do
  {bd} create {e}:/vm$i.img 64M
  {bd} clone {e}:/vm$i.img vm$i-clone.img
  {bd} snapshot {e}:/vm$i.img s1
done
"""


def test_both_hosts_change_their_own_exports_at_once():
    a, b = state.a, state.b
    jobs = [g.spawn(BURST.format(bd=BDCTL, e=e), timeout=900)
            for g, e in ((a, "hosta"), (b, "hostb"))]
    for job in jobs:
        job.wait(timeout=960)
    want = sorted([f"vm{i}.img" for i in range(1, 6)] + [f"vm{i}-clone.img" for i in range(1, 6)] +
                  [f"vm{i}.img@s1" for i in range(1, 6)])
    for export, owner in (("hosta", a), ("hostb", b)):
        own = bd(owner, "--json", "list", f"{export}:").json["volumes"]
        assert sorted(v["path"] for v in own) == want
        # The other host reads the same export: the same volumes, inactive there.
        other = b if owner is a else a
        seen = bd(other, "--json", "list", f"{export}:").json["volumes"]
        assert sorted((v["path"], v["id"]) for v in seen) == sorted((v["path"], v["id"]) for v in own)
        assert not any(v["active"] for v in seen)
        state.ids[export] = sorted((v["path"], v["id"]) for v in own)
    # Same paths, different LVs: one VG, one LV namespace, two exports.
    lvs = a.sh(f"lvs --noheadings -o lv_name {VG}").out.split()
    assert len(lvs) == 2 + 2 * len(want) and len(set(lvs)) == len(lvs), lvs


def test_a_host_cannot_change_another_hosts_export():
    a, b = state.a, state.b
    # Something to read back afterwards.
    a.sh("dd if=/dev/urandom of=/dev/disk/by-bd/bdvg@hosta/vm1.img bs=1M count=8 oflag=direct "
         "conv=fsync status=none")
    before = volume_sums(a, "hosta")
    for args in (("create", "hosta:/evil.img", "16M"),
                 ("delete", "hosta:/vm2.img"),
                 ("rename", "hosta:/vm2.img", "moved.img"),
                 ("clone", "hosta:/vm2.img", "stolen.img"),
                 ("snapshot", "hosta:/vm2.img", "s9"),
                 ("rollback", "hosta:/vm1.img", "s1"),
                 ("resize", "hosta:/vm2.img", "128M"),
                 ("fsck", "hosta"),
                 ("export", "set", "hosta", "--threshold", "50"),
                 ("export", "delete", "hosta", "--force")):
        r = bd(b, *args, check=False)
        assert r.rc == 11, r  # EREMOTE
        assert "not served by this host" in r.err and "host 1" in r.err, r
    r = bd(b, "activate", "hosta", check=False)
    assert r.rc == 11 and "belongs to host 1" in r.err, r
    # Plain LVM on B is refused by lvmlockd: A holds the pool's lock.
    lv = next(v["lv"] for v in bd(b, "--json", "list", "hosta:").json["volumes"]
              if v["path"] == "vm2.img")
    for cmd in (f"lvcreate --snapshot -n evil {VG}/{lv}",
                f"lvremove --yes {VG}/{lv}",
                f"lvrename {VG} {lv} evil",
                f"lvextend -L 256m {VG}/{lv}",
                f"lvchange -aey {VG}/{lv}",
                f"lvchange -aey {VG}/hosta",
                f"lvremove --yes {VG}/hosta",
                # Last: LVM 2.03.16 refuses it, but leaves A's pool active
                # here, without the lock, with a copy of its metadata that
                # goes stale as A writes on.
                f"lvcreate --type thin -V 16m --thinpool hosta -n evil {VG}"):
        r = b.sh(cmd, check=False)
        assert r.rc == 5 and f"LV locked by other host: {VG}/hosta" in r.err, r
    # A pool active here is not a pool served here: bd asks lvmlockd.
    info = bd(b, "--json", "export", "info", "hosta").json
    print("B after the refused lvcreate:", b.sh(f"lvs -o lv_name,lv_attr {VG}; lvmlockctl --info").out)
    assert (info["owned"], info["stale"]) == (False, True), info
    r = bd(b, "create", "hosta:/evil.img", "16M", check=False)
    assert r.rc == 11 and "without its lock" in r.err, r
    # Not even a read that reserves the pool's metadata snapshot: on the stale
    # copy it would commit old metadata over A's (test 5 reads every block).
    r = bd(b, "--json", "snapshots", "hosta:/vm1.img", check=False)
    assert r.rc == 0 and "exclusive" not in r.out and "not served by this host" in r.err, r
    # A cannot take over an export whose host is alive: lvmlockd refuses.
    r = bd(a, "export", "takeover", "hostb", "--wait", "6", check=False)
    assert r.rc == 5 and "locked by other host" in r.err, r
    # Nothing of A's changed.
    assert bd(a, "--json", "list", "hosta:").json["volumes"]
    assert sorted((v["path"], v["id"]) for v in bd(a, "--json", "list", "hosta:").json["volumes"]) \
        == state.ids["hosta"]
    assert volume_sums(a, "hosta") == before
    state.sums = before


def completed_writes():
    try:
        with open(state.writer_log) as f:
            return len(f.read().split())
    except FileNotFoundError:
        return 0


def test_the_owner_loses_power_while_writing():
    a = state.a
    bd(a, "create", "hosta:/writer.img", f"{WRITER_BLOCKS}M")
    state.writer_log = os.path.join(a.out, "writer.log")
    a.spawn(f"tests/cluster/writer /dev/disk/by-bd/{VG}@hosta/writer.img {WRITER_BLOCKS} "
            "/bdout/writer.log", timeout=3600)
    # Past one whole pass over the volume, so every block has been written.
    deadline = time.monotonic() + 300
    while completed_writes() < WRITER_BLOCKS + 8:
        assert time.monotonic() < deadline, "the writer made too few writes in 300 s"
        time.sleep(0.5)
    a.power_off()
    state.killed_at = time.monotonic()


def test_a_survivor_takes_the_export_over():
    b = state.b
    r = bd(b, "--json", "export", "takeover", "hosta", "--wait", "600", timeout=700)
    took = r.json
    state.takeover_s = time.monotonic() - state.killed_at
    print(f"takeover: {state.takeover_s:.1f} s from the power loss "
          f"(bdctl: waited {took['waited_s']:.1f} s for the lease, {took['total_s']:.1f} s "
          f"in all)")
    assert (took["previous_owner"], took["owner"]) == ("1", "2")
    # The lease outlives A by 8 x io_timeout (5 s) + 60 s after its last renewal.
    assert took["waited_s"] >= 60, took
    # Every volume was inactive here, and is active now.
    assert set(took["activated"]) == {p for p, _ in state.ids["hosta"]} | {"writer.img"}
    info = bd(b, "--json", "export", "info", "hosta").json
    assert (info["owner"], info["owned"]) == ("2", True)
    # Every volume as A left it.
    sums = volume_sums(b, "hosta")
    for path, digest in state.sums.items():
        assert sums[path] == digest, path
    # The writer's volume: each block holds the last completed write to it.
    # The write in flight (1 MiB, split on its way down: dm-thin's 64 KiB
    # chunks, virtio's segments) may have landed in part: each of its 512-byte
    # sectors, the unit a disk writes whole, holds the old data or the new.
    done = [int(line) for line in open(state.writer_log).read().split()]
    assert done == list(range(len(done)))
    last = done[-1]
    dev = f"/dev/disk/by-bd/{VG}@hosta/writer.img"
    got = b.sh(f"python3 -c 'import hashlib,sys; f=open(sys.argv[1],\"rb\"); "
               f"[print(hashlib.sha256(f.read(1<<20)).hexdigest()) for _ in range({WRITER_BLOCKS})]'"
               f" {dev}").out.split()
    flight = (last + 1) % WRITER_BLOCKS
    for block in range(WRITER_BLOCKS):
        k = max(k for k in done if k % WRITER_BLOCKS == block)
        if block != flight:
            assert got[block] == hashlib.sha256(writer.block_data(k)).hexdigest(), \
                f"block {block}: not the data of write {k} (last completed {last})"
            continue
        old, new = writer.block_data(k), writer.block_data(last + 1)
        sectors = b.sh(f"python3 -c 'import sys; f=open(sys.argv[1],\"rb\"); f.seek({block}<<20); "
                       f"sys.stdout.write(f.read(1<<20).hex())' {dev}").out
        data = bytes.fromhex(sectors)
        assert len(data) == len(old)
        landed = 0
        for at in range(0, len(data), 512):
            piece = data[at:at + 512]
            assert piece in (old[at:at + 512], new[at:at + 512]), \
                f"block {block} (write {last + 1} in flight): sector {at // 512} is neither " \
                f"write {k}'s nor write {last + 1}'s"
            landed += piece == new[at:at + 512] and piece != old[at:at + 512]
        print(f"the write in flight, {last + 1}: {landed} of {len(data) // 512} sectors landed")
    # B now serves the export: it changes it.
    bd(b, "create", "hosta:/after-takeover.img", "16M")
    bd(b, "snapshot", "hosta:/vm1.img", "s2")
    paths = {v["path"] for v in bd(b, "--json", "list", "hosta:").json["volumes"]}
    assert {"after-takeover.img", "vm1.img@s2"} <= paths
    # A volume moves between two exports of the VG by the blocks it maps
    # (dm-thin never shares blocks across pools): send | receive, here both
    # served by B; between hosts the pipe crosses ssh.
    b.sh(f"{BDCTL} send hosta:/vm1.img --snapshot move | {BDCTL} receive hostb:/vm1-moved.img")
    dev = bd(b, "--json", "info", "hostb:/vm1-moved.img").json["device"]
    assert b.sh(f"sha256sum < {dev}").out.split()[0] == state.sums["vm1.img"]


def test_the_old_owner_comes_back_and_keeps_its_hands_off():
    b = state.b
    before = sorted((v["path"], v["id"]) for v in bd(b, "--json", "list", "hosta:").json["volumes"])
    a = state.a2 = Guest("A2", state.work, state.disk)
    a.boot()
    a.sh("tests/cluster/host-up 1")
    a.sh(f"tests/cluster/lockstart {VG}")
    seen = exports(a)
    assert (seen["hosta"]["owner"], seen["hosta"]["owned"]) == ("2", False)
    r = bd(a, "activate", "hosta", check=False)
    assert r.rc == 11 and "belongs to host 2" in r.err, r
    r = bd(a, "create", "hosta:/mine-again.img", "16M", check=False)
    assert r.rc == 11, r
    r = a.sh(f"lvchange -aey {VG}/hosta", check=False)
    assert r.rc == 5 and f"LV locked by other host: {VG}/hosta" in r.err, r
    after = sorted((v["path"], v["id"]) for v in bd(b, "--json", "list", "hosta:").json["volumes"])
    assert after == before
