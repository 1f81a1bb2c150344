"""Every change bdfs makes is one core transaction: the failures a read of
commit f2d949a found, each replayed against a real mount (issue 9).

bdctl plays the other front; a process holding /dev/VG/LV plays a VM.
"""
import errno
import fcntl
import os
import shutil
import subprocess
import time
import uuid

import pytest

from bdfs_mount import Mount
from conftest import BUILD, Bd, destroy, lv_name, make_export, sh
from devio import read_at as read, write_at as write

IOTOOL = os.path.join(BUILD, "fuse-view", "bdfs-iotool")
MiB = 1 << 20


@pytest.fixture(scope="module")
def tbd(tmp_path_factory):
    b = make_export(tmp_path_factory.mktemp("pv"), "x" + uuid.uuid4().hex[:6])
    yield b
    destroy(b)


@pytest.fixture(scope="module")
def mnt(tbd, tmp_path_factory):
    m = Mount(tbd, tmp_path_factory.mktemp("mnt") / "bd")
    yield m
    m.unmount()


@pytest.fixture
def d(mnt):
    name = "t" + uuid.uuid4().hex[:6]
    os.mkdir(mnt.p(name))
    return name


def iotool(*args, rc=0):
    r = subprocess.run([IOTOOL, *map(str, args)], capture_output=True, text=True)
    assert rc is None or r.returncode == rc, (args, r.stdout, r.stderr)
    return r


# 1. Rename over an existing file
def test_mv_over_a_file_never_loses_the_target(mnt, d):
    bd = mnt.bd
    bd.create(f"/{d}/src.img", "8M")
    bd.create(f"/{d}/dst.img", "8M")
    keep = bd.fill(f"/{d}/dst.img", 2, "target")
    # A bdctl rename of the source killed after its first change: unfinished work.
    bd.run("rename", bd.spec(f"/{d}/src.img"), f"/{d}/other.img", rc=None,
           env={"BD_FAULT_KILL_AFTER": "1"})
    r = mnt.run(f"mv -f {d}/src.img {d}/dst.img", rc=1)
    assert "Structure needs cleaning" in r.stderr, r.stderr
    assert bd.checksum(f"/{d}/dst.img", 2) == keep          # the target is still there
    bd.run("fsck", bd.name)
    src_id = bd.info(f"/{d}/src.img")["id"]
    mnt.run(f"mv -f {d}/src.img {d}/dst.img")
    assert bd.info(f"/{d}/dst.img")["id"] == src_id and f"{d}/src.img" not in bd.paths()


def test_an_open_file_follows_its_volume_not_its_old_path(mnt, d):
    """bdfs acts on the volume an inode is (its id), and the core checks under
    its lock that the path still holds that id (ESTALE otherwise: the unit
    test ReplaceIsOneCommitAndChecksIdentity races it deterministically)."""
    bd = mnt.bd
    mnt.run(f"truncate -s 4M {d}/a")
    fd = os.open(mnt.p(d, "a"), os.O_RDONLY)
    try:
        bd.run("rename", bd.spec(f"/{d}/a"), f"/{d}/b")
        bd.create(f"/{d}/a", "4M")              # another volume at the same path
        os.fchmod(fd, 0o640)                    # the open file is b now
        assert bd.info(f"/{d}/b")["mode"] == 0o640
        assert bd.info(f"/{d}/a")["mode"] == 0o600
    finally:
        os.close(fd)


def sleeping_thread(pid):
    """Whether a thread of `pid` is in nanosleep or clock_nanosleep (x86-64)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                if f.read().split()[0] in ("35", "230"):
                    return True
        except (OSError, IndexError):
            pass
    return False


def test_a_volume_swapped_under_bdfs_is_never_the_one_it_deletes(mnt, d):
    """bdfs has looked "a" up when another front, under the export lock,
    renames it to "b" and makes a new "a": bdfs's delete, which waited for
    that lock, names the volume it saw and is refused (ESTALE), where a delete
    by path would act on the new "a" while bdfs believed it the old one."""
    bd = mnt.bd
    mnt.run(f"truncate -s 4M {d}/a")
    old_id = bd.info(f"/{d}/a")["id"]
    pool = bd.json("export", "info", bd.name)["thinpool"]
    vg_uuid = sh("vgs", "--noheadings", "-o", "vg_uuid", bd.vg).stdout.strip()
    run_dir = os.environ.get("BD_RUN_DIR", "/run/bd")
    with open(f"{run_dir}/vg-{vg_uuid}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rm = subprocess.Popen(["rm", "-f", mnt.p(d, "a")], stderr=subprocess.PIPE, text=True)
        # The core polls the lock with usleep: a bdfs thread asleep is one
        # that has looked "a" up and waits for the lock.
        deadline = time.monotonic() + 60
        while not sleeping_thread(mnt.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rm.poll() is None, "bdfs did not wait for the export lock"
        assert sleeping_thread(mnt.proc.pid), "bdfs never waited for the export lock"
        # What `bdctl rename a b; bdctl create a` does, by hand, under the lock.
        a, b = lv_name(f"{d}/a"), lv_name(f"{d}/b")
        sh("lvrename", "--", bd.vg, a, b)
        sh("lvchange", "--deltag", f"bd.path={d}/a", "--addtag", f"bd.path={d}/b", "--",
           f"{bd.vg}/{b}")
        sh("lvcreate", "-q", "--type", "thin", "--thinpool", pool, "--virtualsize", "4M",
           "--name", a, "--addtag", "bd.v=1", "--addtag", f"bd.path={d}/a",
           "--addtag", "bd.id=swapped", "--", bd.vg)
        fcntl.flock(lock, fcntl.LOCK_UN)
    _, err = rm.communicate(timeout=120)
    rc = rm.returncode
    # bdfs refused the stale reference: the core saw another volume at "a".
    assert (f'is now another volume (id swapped, where {old_id} was expected)'
            in mnt.logtext()), mnt.logtext()
    # The volume bdfs had looked up lives on as "b", whatever rm did next.
    assert bd.info(f"/{d}/b")["id"] == old_id
    # Linux retries an unlink that failed with ESTALE once, after a fresh
    # lookup (fs/namei.c, retry_estale): that one removes what "a" names now.
    if rc == 0:
        assert f"{d}/a" not in bd.paths()
    else:
        assert "Stale file handle" in err, err
        assert bd.info(f"/{d}/a")["id"] == "swapped"


# 2. Directory rename
def test_a_directory_move_is_one_commit_fsck_finishes(mnt, d, tmp_path):
    bd = mnt.bd
    mnt.run(f"mkdir -m 750 {d}/src && truncate -s 4M {d}/src/a {d}/src/b")
    write(mnt.p(d, "src", "a"), b"moved")
    m = Mount(bd, tmp_path / "k", env={"BD_FAULT_KILL_AFTER": "1"})  # dies after the commit
    m.run(f"mv {d}/src {d}/dst", rc=None)
    m.unmount()
    assert sorted(p for p in bd.paths() if p.startswith(d)) == [f"{d}/dst/a", f"{d}/dst/b"]
    r = bd.run("create", bd.spec(f"/{d}/src/late"), "4M", rc=5)   # not under a moving source
    assert "is being moved" in r.stderr
    assert bd.json("fsck", bd.name)["clean"]
    assert read(mnt.p(d, "dst", "a"), 5) == b"moved"
    assert os.stat(mnt.p(d, "dst")).st_mode & 0o7777 == 0o750
    assert not os.path.exists(mnt.p(d, "src"))


# 3. rm of an origin that has snapshots
def test_rm_of_an_origin_with_snapshots_is_busy_whether_open_or_not(mnt, d):
    mnt.run(f"truncate -s 4M {d}/origin && ln -s origin {d}/snap")
    r = mnt.run(f"rm {d}/origin", rc=1)
    assert "Device or resource busy" in r.stderr, r.stderr
    fd = os.open(mnt.p(d, "origin"), os.O_RDWR)
    try:
        r = mnt.run(f"rm {d}/origin", rc=1)
        assert "Device or resource busy" in r.stderr, r.stderr
        assert "origin" in os.listdir(mnt.p(d))         # not hidden
    finally:
        os.close(fd)
    mnt.run(f"rm {d}/snap {d}/origin")
    assert os.listdir(mnt.p(d)) == []


# 4. Emptying a file a VM holds
def test_emptying_a_file_a_vm_holds_is_refused_as_rm_is(mnt, d):
    mnt.run(f"truncate -s 8M {d}/vm.img")
    write(mnt.p(d, "vm.img"), b"guest data")
    vm = os.open(mnt.bd.device(f"/{d}/vm.img"), os.O_RDWR)   # QEMU's own open
    try:
        for cmd in (f": > {d}/vm.img", f"truncate -s 0 {d}/vm.img",
                    f"{IOTOOL} fallocate {d}/vm.img punch 0 {8 * MiB}", f"rm {d}/vm.img"):
            r = mnt.run(cmd, rc=None)
            assert r.returncode != 0 and ("busy" in (r.stderr + r.stdout).lower() or
                                          "EBUSY" in r.stdout), (cmd, r.stderr, r.stdout)
        assert read(mnt.p(d, "vm.img"), 10) == b"guest data"
        iotool("fallocate", mnt.p(d, "vm.img"), "punch", 0, MiB)  # a part: the owner's business
    finally:
        os.close(vm)
    mnt.run(f": > {d}/vm.img")
    assert os.stat(mnt.p(d, "vm.img")).st_size == 0


# 7. Thick volumes: zeroing means zeros
@pytest.fixture
def nodiscard(tmp_path):
    """An export whose PV cannot discard, as many disks cannot (or discard
    without zeroing). The guest's loop devices zero what they discard (tmpfs
    punches holes), which would hide the difference; a device-mapper snapshot
    target (of a dm-zero origin, its writes kept on a loop device, after a
    header so that LVM sees no second PV label there) passes no
    discard at all."""
    name = "z" + uuid.uuid4().hex[:6]
    img = tmp_path / "cow.img"
    sh("truncate", "-s", "160M", img)
    loop = sh("losetup", "--find", "--show", img).stdout.strip()
    zero, dm = f"bdzero-{name}", f"bdnd-{name}"
    pv = f"/dev/mapper/{dm}"
    b = Bd(name, f"vg_{name}", pv)
    sectors = 256 * MiB // 512
    try:
        sh("dmsetup", "create", zero, "--table", f"0 {sectors} zero")
        sh("dmsetup", "create", dm, "--table",
           f"0 {sectors} snapshot /dev/mapper/{zero} {loop} P 8")
        rdev = os.stat(pv).st_rdev
        with open(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}/queue/"
                  "discard_max_bytes") as k:
            assert k.read().strip() == "0"               # the premise holds
        b.run("export", "create", name, "--vg", b.vg, "--pv", pv, "--size", "64M")
        m = Mount(b, tmp_path / "mnt")
        try:
            yield m
        finally:
            m.unmount()
    finally:
        sh("vgremove", "-f", "-y", b.vg, check=False)
        sh("pvremove", "-f", "-y", pv, check=False)
        sh("dmsetup", "remove", dm, check=False)
        sh("dmsetup", "remove", zero, check=False)
        sh("losetup", "-d", loop, check=False)
        os.unlink(img)                                   # tmpfs: RAM


def test_a_thick_volume_reads_zeros_after_punch_zero_range_and_truncate(nodiscard):
    mnt, bd = nodiscard, nodiscard.bd
    bd.create("/thick", "8M", "--thick")
    bd.fill("/thick", 8, "old data")
    f = mnt.p("thick")
    iotool("fallocate", f, "punch", MiB, 2 * MiB)
    assert read(f, 2 * MiB, MiB) == bytes(2 * MiB)
    iotool("fallocate", f, "zero-keep", 4 * MiB, MiB + 123)
    assert read(f, MiB + 123, 4 * MiB) == bytes(MiB + 123)
    assert read(f, MiB, 0) != bytes(MiB)                        # the rest is kept
    mnt.run(": > thick && truncate -s 8M thick")
    assert read(f, 8 * MiB) == bytes(8 * MiB)                  # nothing old shows through
    assert read(bd.device("/thick"), 8 * MiB) == bytes(8 * MiB)


# 8. fallocate(0) on a thin file
def test_fallocate_does_not_pretend_to_reserve_thin_space(mnt, d):
    bd = mnt.bd
    mnt.run(f"truncate -s 8M {d}/thin")
    r = iotool("fallocate", mnt.p(d, "thin"), "alloc", 0, 4 * MiB, rc=1)
    assert "EOPNOTSUPP" in r.stdout, r.stdout
    assert bd.info(f"/{d}/thin")["allocated"] == 0
    r = mnt.run(f"fallocate -l 4M {d}/thin", rc=1)
    assert "not supported" in r.stderr, r.stderr
    bd.create(f"/{d}/thick", "8M", "--thick")
    iotool("fallocate", mnt.p(d, "thick"), "alloc", 0, 4 * MiB)   # all there already


# 10. Threads: LVM started from a libfuse worker (which blocks HUP, INT, QUIT, TERM)
def test_lvm_started_by_bdfs_blocks_no_signal(mnt, d, tmp_path):
    bd = mnt.bd
    wrap, seen = tmp_path / "bin", tmp_path / "sigblk"
    wrap.mkdir()
    real = shutil.which("lvcreate")
    assert real, "no lvcreate on PATH"
    # Python, not sh: a shell may reset its signal mask before reading it.
    (wrap / "lvcreate").write_text(
        "#!/usr/bin/python3 -S\nimport os, sys\n"
        "with open('/proc/self/status') as s:\n"
        "    mask = [l.split()[1] for l in s if l.startswith('SigBlk:')][0]\n"
        f"with open('{seen}', 'a') as o:\n    o.write(mask + '\\n')\n"
        f"os.execv('{real}', ['{real}'] + sys.argv[1:])\n")
    (wrap / "lvcreate").chmod(0o755)
    m = Mount(bd, tmp_path / "m", env={"PATH": f"{wrap}:{os.environ['PATH']}"})
    try:
        m.run(f"truncate -s 4M {d}/sig.img")
    finally:
        m.unmount()
    masks = seen.read_text().split()
    assert masks, "LVM never ran through the wrapper"
    assert all(int(x, 16) == 0 for x in masks), masks   # nothing blocked: signals work
    assert bd.info(f"/{d}/sig.img")["size"] == 4 * MiB


# 9. Cache coherence
def test_activation_shows_at_once(mnt, d):
    bd = mnt.bd
    v = bd.create(f"/{d}/act.img", "8M")
    sh("lvchange", "-an", f"{bd.vg}/{v['lv']}")
    bd.create(f"/{d}/other.img", "4M")               # a metadata change: bdfs rereads
    with pytest.raises(OSError) as e:
        open(mnt.p(d, "act.img"), "rb")
    assert e.value.errno == errno.ENXIO
    bd.run("activate", bd.spec(f"/{d}/act.img"))     # no metadata change, but a uevent
    with open(mnt.p(d, "act.img"), "rb") as f:
        assert f.read(4) == bytes(4)


@pytest.mark.serial  # edits lvm.conf
def test_with_lvm_backups_off_every_change_still_shows(tbd, tmp_path):
    conf = "/etc/lvm/lvm.conf"
    with open(conf) as f:
        saved = f.read()
    with open(conf, "a") as f:
        f.write("\nbackup {\n\tbackup = 0\n}\n")
    m = None
    try:
        m = Mount(tbd, tmp_path / "nobackup")
        os.listdir(m.path)
        lv = "nb" + uuid.uuid4().hex[:6]
        sh("lvcreate", "-q", "--type", "thin", "-V", "4M", "--thinpool", "pool", "-n", lv, tbd.vg)
        assert lv in os.listdir(m.path)
        sh("lvremove", "-q", "-y", f"{tbd.vg}/{lv}")
        assert lv not in os.listdir(m.path)
        assert "every request runs lvs" in m.logtext()
    finally:
        if m:
            m.unmount()
        with open(conf, "w") as f:
            f.write(saved)
