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
6. B's patched libvirtd starts a bd pool on the export it took over, lists
   A's volumes, and starts a VM from one of them.
7. B's libvirt makes, in the pool of B's own export, the volume that a
   live migration with its disks asks the destination for (the request,
   replayed: the guests have no network for the copy).
8. A comes back and keeps its hands off the export it lost, its libvirt
   pool's start included (and a restarted libvirtd that had the pool
   running brings it back inactive), while B serves the export.
9. The VM read what A had written and wrote where B reads it back.

The libvirt steps run the patched libvirt (BD_LIBVIRT_PREFIX, else
`pool-backend/libvirt/build-libvirt --print-prefix`, as tests/libvirt does);
without it every test errors.
"""
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import types
import xml.etree.ElementTree as ET

import pytest

from cluster import ROOT, Guest

sys.path.insert(0, os.path.join(ROOT, "tests", "libvirt"))
import bdlibvirt  # noqa: E402

BUILD = os.environ.get("BD_BUILD_DIR", os.path.join(ROOT, "build"))
BDCTL = os.path.join(BUILD, "virsh-ext", "bdctl")
VG = "bdvg"
WRITER_BLOCKS = 32

# The libvirt bd pool on a pool export of the shared VG names it VG@POOL;
# the pool's target is then the export's volume tree, /dev/disk/by-bd/VG@POOL.
POOL_SOURCE = f"{VG}@hosta"
# Whether LVM, refusing B's lvcreate in A's pool (test 3), leaves that pool
# active on B: a stale copy of its metadata, which bd must refuse to use.
# A new LVM fails test 3 until it is listed here, so that the stale path
# cannot go untested without anyone noticing.
LVM_LEAVES_A_REFUSED_POOL_ACTIVE = {"2.03.16": True,    # Debian 12
                                    "2.03.31": False}   # Debian 13
LIBVIRT_POOL = "hosta"            # the pool's libvirt name, on B and on A
VM = "bd-cluster-vm"              # the domain B starts from A's volume vm1.img
VM_IMAGES = "/var/lib/libvirt/images/bd-cluster"   # in B: the nested kernel, initramfs
HEAD_MIB = 8                      # what test 3 writes at the start of vm1.img
MARK_AT_MIB = 63                  # where the VM writes its mark (vm1.img: 64 MiB)


def _load_writer():
    """tests/cluster/writer, a script without .py, as a module: its block_data()."""
    loader = importlib.machinery.SourceFileLoader(
        "bd_writer", os.path.join(ROOT, "tests", "cluster", "writer"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


writer = _load_writer()

# What each step leaves for the next.
state = types.SimpleNamespace(a=None, b=None, a2=None, work=None, sums={}, ids={},
                              libvirt=None)


@pytest.fixture(scope="module", autouse=True)
def cluster():
    if not os.access(BDCTL, os.X_OK):
        raise pytest.UsageError(f"{BDCTL} is not built: run `meson setup build && ninja -C build`")
    try:
        state.libvirt = bdlibvirt.libvirt_prefix()
    except AssertionError as e:  # no patched libvirtd there: every test errors
        raise pytest.UsageError(f"the patched libvirt: {e}") from None
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


def libvirt_host(verb, *args):
    """The command line of tests/cluster/libvirt-host VERB (the patched libvirt
    on a guest), for Guest.sh or Guest.spawn; it prints JSON."""
    return " ".join(shlex.quote(a) for a in
                    ("tests/cluster/libvirt-host", verb, state.libvirt) + args)


def virsh(guest, *args, check=True):
    """The patched virsh on a guest's libvirtd (qemu:///system)."""
    return guest.sh(" ".join(shlex.quote(a) for a in
                             (f"{state.libvirt}/bin/virsh", "-c", "qemu:///system") + args),
                    check=check)


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
    a.sh(f"dd if=/dev/urandom of=/dev/disk/by-bd/bdvg@hosta/vm1.img bs=1M count={HEAD_MIB} "
         "oflag=direct conv=fsync status=none")
    before = volume_sums(a, "hosta")
    # What the VM of test 6 reads: A's data, as A wrote it.
    state.vm1_head = a.sh(f"head -c {HEAD_MIB << 20} /dev/disk/by-bd/bdvg@hosta/vm1.img | "
                          "sha256sum").out.split()[0]
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
    # A pool active here is not a pool served here: bd asks lvmlockd. LVM
    # 2.03.16 (Debian 12) leaves A's pool active on B after refusing that
    # lvcreate, with a copy of its metadata that goes stale as A writes on;
    # 2.03.31 (Debian 13) leaves it inactive. bd tells them apart.
    lvm = b.sh("lvm version").out.split()[2].split("(")[0]
    assert lvm in LVM_LEAVES_A_REFUSED_POOL_ACTIVE, f"LVM {lvm}: see LVM_LEAVES_A_REFUSED_POOL_ACTIVE"
    active_here = LVM_LEAVES_A_REFUSED_POOL_ACTIVE[lvm]
    assert (b.sh(f"lvs --noheadings -o lv_attr {VG}/hosta").out.strip()[4] == "a") == active_here
    info = bd(b, "--json", "export", "info", "hosta").json
    print("B after the refused lvcreate:", b.sh(f"lvs -o lv_name,lv_attr {VG}; lvmlockctl --info").out)
    assert (info["owned"], info["stale"]) == (False, active_here), info
    r = bd(b, "create", "hosta:/evil.img", "16M", check=False)
    why = "without its lock" if active_here else "not served by this host"
    assert r.rc == 11 and why in r.err, r
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
    # B's libvirtd, as every host runs one, with the nested VM's kernel for
    # test 6: started here, where B only waits for A's lease to expire.
    state.b_libvirtd = b.spawn(libvirt_host("daemon", VM_IMAGES), timeout=900)
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


def test_the_survivors_libvirt_serves_the_export_and_runs_a_vm_from_it():
    b = state.b
    up = json.loads(state.b_libvirtd.wait(timeout=960).out)
    print(f"B's libvirtd: {up}")
    assert up["libvirtd"] == os.path.realpath(f"{state.libvirt}/sbin/libvirtd"), up
    assert up["bdctl"] == os.path.realpath(BDCTL), up
    t0 = time.monotonic()
    # A pool on the export B took over: its start runs `bdctl activate`.
    started = json.loads(b.sh(libvirt_host("pool", LIBVIRT_POOL, POOL_SOURCE)).out)
    assert (started["rc"], started["state"]) == (0, "running"), started
    pool = ET.fromstring(virsh(b, "pool-dumpxml", LIBVIRT_POOL).out)
    assert pool.findtext("source/name") == POOL_SOURCE
    print(f"the pool's target on B: {pool.findtext('target/path')}")
    assert pool.findtext("target/path") == f"/dev/disk/by-bd/{VG}@hosta"
    # Its volumes are the export's: A's, by id (libvirt's key) and capacity,
    # and B's since the takeover, as bdctl lists them here.
    vols = {v["name"]: v for v in json.loads(b.sh(libvirt_host("volumes", LIBVIRT_POOL)).out)
            ["volumes"]}
    listed = bd(b, "--json", "list", "hosta:").json["volumes"]
    assert {n: (v["key"], v["capacity"]) for n, v in vols.items()} == \
        {v["path"]: (v["id"], v["capacity"]) for v in listed}
    made_by_a = {path: (vid, 64 << 20) for path, vid in state.ids["hosta"]}
    made_by_a["writer.img"] = (None, WRITER_BLOCKS << 20)
    for path, (vid, capacity) in made_by_a.items():
        assert path in vols, (path, sorted(vols))
        assert vols[path]["capacity"] == capacity, vols[path]
        assert vid is None or vols[path]["key"] == vid, vols[path]
    # Each volume's path is its link in the export's tree.
    for name, v in vols.items():
        assert v["path"] == f"/dev/disk/by-bd/{VG}@hosta/{name}", v
    # A VM from A's vm1.img (bdctl domain-disk's <disk type='volume'>),
    # started paused: QEMU holds the LV B took over.
    state.vm_mark = os.urandom(8).hex()
    vm = json.loads(b.sh(libvirt_host(
        "vm-start", LIBVIRT_POOL, "hosta", "vm1.img", VM_IMAGES, VM, f"bd.head={HEAD_MIB}",
        f"bd.markat={MARK_AT_MIB}", f"bd.mark={state.vm_mark}"), timeout=900).out)
    print(f"the VM on B: {vm}")
    dev = bd(b, "--json", "info", "hosta:/vm1.img").json["device"]
    assert vm["device"] == dev
    assert vm["vol_path"] == f"/dev/disk/by-bd/{VG}@hosta/vm1.img" and vm["vol_path_names_device"]
    assert vm["exe"] == bdlibvirt.QEMU and vm["state"] == "paused", vm
    assert vm["opened"].startswith(f"/dev/{VG}/") and vm["opened_is_device"], vm
    assert vm["fds_on_device"], vm
    assert vm["resumed"] == "running", vm
    state.vm_started = time.monotonic()
    print(f"libvirt on B: {state.vm_started - t0:.1f} s to a running VM")


def test_the_destination_makes_the_volume_a_migration_asks_for():
    # virsh migrate --copy-storage-all to B of a domain whose disk is
    # <disk type='volume'> first has B's libvirt make the missing volume in
    # the pool the destination's XML names: B's own export's, hostb
    # (docs/SEVERAL-HOSTS.md, "Live migration"). This replays that request
    # (the vol-create with the XML qemuMigrationDstPrecreateDisk writes); a
    # migration itself needs a network between the hosts, which the guests
    # lack. The volume libvirt makes must be a thin volume of hostb, exactly
    # as long as the source.
    b = state.b
    # find-storage-pool-sources names both exports as their pools do.
    sources = ET.fromstring(virsh(b, "find-storage-pool-sources", "bd").out)
    names = sorted(s.findtext("name") for s in sources.findall("source"))
    assert names == [f"{VG}@hosta", f"{VG}@hostb"], names
    # A pool on an export nobody made says how to make one, and makes nothing.
    lvs_before = b.sh(f"lvs --noheadings -o lv_name {VG}").out.split()
    r = json.loads(b.sh(libvirt_host("pool", "nosuch", f"{VG}@nosuch")).out)
    assert (r["rc"], r["state"]) == (1, "inactive"), r
    assert (f"no bd export 'nosuch' in shared volume group '{VG}': make it with 'bdctl export "
            f"create nosuch --vg {VG} --shared --size SIZE'") in r["err"], r
    assert b.sh(f"lvs --noheadings -o lv_name {VG}").out.split() == lvs_before
    virsh(b, "pool-undefine", "nosuch")
    started = json.loads(b.sh(libvirt_host("pool", "hostb", f"{VG}@hostb")).out)
    assert (started["rc"], started["state"]) == (0, "running"), started
    hosta_before = sorted(v["path"] for v in bd(b, "--json", "list", "hosta:").json["volumes"])
    # The capacity migration asks for is the source disk's length: here
    # A's vm1.img, as its device reports it. QEMU's mirror then needs the
    # destination to be exactly as long ("Source and target image have
    # different sizes" otherwise).
    source = bd(b, "--json", "info", "hosta:/vm1.img").json["device"]
    capacity = int(b.sh(f"blockdev --getsize64 {source}").out)
    made = json.loads(b.sh(libvirt_host("precreate", "hostb", "migrated.img", str(capacity))).out)
    print(f"precreated on B: {made}")
    assert (made["existed"], made["rc"]) == (False, 0), made
    assert made["capacity"] == capacity and made["format"] == "raw", made
    assert made["path"] == f"/dev/disk/by-bd/{VG}@hostb/migrated.img", made
    info = bd(b, "--json", "info", "hostb:/migrated.img").json
    assert (info["export"], info["type"], info["capacity"]) == ("hostb", "thin", capacity), info
    assert made["key"] == info["id"], (made, info)
    assert int(b.sh(f"blockdev --getsize64 {info['device']}").out) == capacity
    pool_lv = b.sh(f"lvs --noheadings -o pool_lv {VG}/{info['lv']}").out.strip()
    assert pool_lv == "hostb", pool_lv
    # The volume exists now: libvirt's precreation skips it (and the mirror
    # would write into it); a vol-create of the same name is refused.
    again = json.loads(b.sh(libvirt_host("precreate", "hostb", "migrated.img", str(capacity))).out)
    assert again["existed"] and again["rc"] == 1 and "migrated.img" in again["err"], again
    assert bd(b, "--json", "info", "hostb:/migrated.img").json["id"] == info["id"]
    # A source whose length is not a whole number of the VG's extents gets a
    # volume rounded up to one (a migration from such a disk would fail in
    # QEMU's mirror; docs/SEVERAL-HOSTS.md says so).
    extent = int(b.sh(f"vgs --noheadings --units b --nosuffix -o vg_extent_size {VG}").out)
    odd = (48 << 20) + 4096
    made = json.loads(b.sh(libvirt_host("precreate", "hostb", "odd.img", str(odd))).out)
    assert made["rc"] == 0 and made["capacity"] == -(-odd // extent) * extent, (made, extent)
    assert sorted(v["path"] for v in bd(b, "--json", "list", "hosta:").json["volumes"]) \
        == hosta_before


def test_the_old_owner_comes_back_and_keeps_its_hands_off():
    b = state.b
    before = sorted((v["path"], v["id"]) for v in bd(b, "--json", "list", "hosta:").json["volumes"])
    a = state.a2 = Guest("A2", state.work, state.disk)
    a.boot()
    libvirtd = a.spawn(libvirt_host("daemon"), timeout=900)
    a.sh("tests/cluster/host-up 1")
    a.sh(f"tests/cluster/lockstart {VG}")
    seen = exports(a)
    assert (seen["hosta"]["owner"], seen["hosta"]["owned"]) == ("2", False)
    r = bd(a, "activate", "hosta", check=False)
    assert r.rc == 11 and "belongs to host 2" in r.err, r
    # Nor does its libvirt pool start (its start runs bdctl activate, which
    # answers EREMOTE), while B's VM runs from the export.
    libvirtd.wait(timeout=960)
    print("B's VM:", virsh(b, "domstate", VM, check=False).out.strip())
    r = json.loads(a.sh(libvirt_host("pool", LIBVIRT_POOL, POOL_SOURCE)).out)
    print(f"pool-start on A: exit {r['rc']}\n{r['err']}")
    assert (r["rc"], r["state"], r["libvirtd_alive"]) == (1, "inactive", True), r
    assert ('Requested operation is not valid: bdctl: export "hosta" belongs to host 2, '
            'not to this host (1)') in r["err"] and "internal error" not in r["err"], r
    # It activated nothing here, and made no links.
    assert a.sh(f"lvs --noheadings -o lv_attr {VG}/hosta").out.strip()[4] == "-"
    assert a.sh(f"ls /dev/disk/by-bd/{VG}@hosta", check=False).rc != 0
    # A daemon that had the pool running (A hung, B took the export over,
    # A's libvirtd restarted) brings it back inactive: its check asks bdctl,
    # which says A does not own the export. (A's own daemon never had it
    # running, so the file it would have kept is planted.)
    r = json.loads(a.sh(libvirt_host("restart", LIBVIRT_POOL)).out)
    print(f"A's libvirtd restarted with the pool marked running: {r}")
    # (A check that fails, or a refresh, would also leave it inactive; both
    # log, and remove the file, which a check that answers "inactive" keeps.)
    assert (r["state"], r["check_failed"], r["state_file_left"], r["libvirtd_alive"]) == \
        ("inactive", False, True, True), r
    assert a.sh(f"lvs --noheadings -o lv_attr {VG}/hosta").out.strip()[4] == "-"
    r = bd(a, "create", "hosta:/mine-again.img", "16M", check=False)
    assert r.rc == 11, r
    r = a.sh(f"lvchange -aey {VG}/hosta", check=False)
    assert r.rc == 5 and f"LV locked by other host: {VG}/hosta" in r.err, r
    after = sorted((v["path"], v["id"]) for v in bd(b, "--json", "list", "hosta:").json["volumes"])
    assert after == before


def test_the_vm_on_the_survivor_read_what_a_wrote_and_wrote_to_the_lv():
    b = state.b
    done = json.loads(b.sh(libvirt_host("vm-wait", VM, "1200"), timeout=1300).out)
    ran = time.monotonic() - state.vm_started
    print(f"the VM on B ran {ran:.0f} s (waited {done['waited_s']} s here); its console:\n"
          f"{done['console']}")
    console = done["console"] or ""
    assert done["state"] in ("gone", "shut off") and "BD-E2E-DONE" in console, done
    assert f"BD-E2E-SIZE {64 << 20}" in console                       # vm1.img, whole
    assert f"BD-E2E-HEAD-SHA256 {HEAD_MIB} {state.vm1_head}" in console  # what A wrote
    assert f"BD-CLUSTER-WROTE 0 {state.vm_mark}" in console
    # Its write is on the LV, as B reads it (O_DIRECT: not B's page cache).
    dev = bd(b, "--json", "info", "hosta:/vm1.img").json["device"]
    want = f"BD-CLUSTER-MARK {state.vm_mark}\n".encode()
    got = b.sh(f"dd if={dev} bs=1M skip={MARK_AT_MIB} count=1 iflag=direct status=none | "
               f"head -c {len(want)} | od -An -tx1 -v").out
    assert bytes.fromhex(got.replace(" ", "").replace("\n", "")) == want, got
