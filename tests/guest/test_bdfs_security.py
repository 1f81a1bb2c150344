"""Trust, through a bdfs mount: a local user with a shell is the attacker.

Each test mounts an export as bdfs@.service does (`-o allow_other`) and acts
as real unprivileged uids (setpriv), with every file operation the kernel lets
them try. See docs/ARCHITECTURE.md, "Security".
"""
import os
import subprocess
import time
import uuid

import pytest

from bdfs_mount import Mount
from conftest import destroy, make_export, sh
from devio import read_at as read, write_at as write

MiB = 1 << 20
VICTIM, ATTACKER, NOBODY = 1001, 1002, 65534


def as_user(mnt, uid, cmd, rc=0, groups=None):
    """A shell command in the mount as `uid` (its own group, and `groups`).
    Its cwd is the mount; paths stay relative (the directories above the mount
    are root's 0700), so no `cd` (the shell's cd walks the absolute $PWD)."""
    g = f"--groups {','.join(map(str, groups))}" if groups else "--clear-groups"
    return mnt.run(f"setpriv --reuid {uid} --regid {uid} {g} sh -c '{cmd}'", rc=rc)


@pytest.fixture(scope="module")
def sec_bd(tmp_path_factory):
    b = make_export(tmp_path_factory.mktemp("pv"), "s" + uuid.uuid4().hex[:6])
    yield b
    destroy(b)


@pytest.fixture(scope="module")
def mnt(sec_bd, tmp_path_factory):
    m = Mount(sec_bd, tmp_path_factory.mktemp("mnt") / "bd", "allow_other")  # as bdfs@.service
    yield m
    m.unmount()


@pytest.fixture
def d(mnt):
    """A fresh world-writable sticky directory, as /tmp is."""
    name = "t" + uuid.uuid4().hex[:6]
    os.mkdir(mnt.p(name))
    os.chmod(mnt.p(name), 0o1777)
    return name


def tags_of(bd, path):
    return sh("lvs", "--noheadings", "-o", "lv_tags",
              f"{bd.vg}/{bd.info(path)['lv']}").stdout.strip().split(",")


# ---- 1. private by default ----------------------------------------------------------

def test_volumes_made_by_bdctl_or_lvm_are_private_in_the_mount(mnt):
    bd = mnt.bd
    bd.create("/vm-disk.img", "4M")
    bd.write("/vm-disk.img", b"VM DISK DATA")
    lv = "byhand" + uuid.uuid4().hex[:6]
    sh("lvcreate", "-q", "--type", "thin", "-V", "4M", "--thinpool", "pool", "-n", lv, bd.vg)
    with open(f"/dev/{bd.vg}/{lv}", "r+b") as f:
        f.write(b"LVM DATA")
    for name in ("vm-disk.img", lv):
        st = os.stat(mnt.p(name))
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o600), name
        r = as_user(mnt, NOBODY, f"head -c 8 {name}", rc=1)
        assert "Permission denied" in r.stderr and "DATA" not in r.stdout
    # chmod and chown adopt a foreign volume, in place: /dev/VG/LV stays.
    os.chmod(mnt.p(lv), 0o640)
    os.chown(mnt.p(lv), VICTIM, VICTIM)
    info = bd.info("/" + lv)
    assert (info["managed"], info["lv"], info["uid"], info["mode"]) == (True, lv, VICTIM, 0o640)
    assert os.path.exists(f"/dev/{bd.vg}/{lv}")
    assert as_user(mnt, VICTIM, f"head -c 8 {lv}").stdout == "LVM DATA"
    assert bd.json("fsck", bd.name)["clean"]


# ---- 4. snapshots and clones only of what you may read -------------------------------

def test_snapshots_and_clones_need_read_access_to_the_origin(mnt, d):
    os.mkdir(mnt.p(d, "priv"))
    os.chown(mnt.p(d, "priv"), VICTIM, VICTIM)
    os.chmod(mnt.p(d, "priv"), 0o700)
    as_user(mnt, VICTIM, f"truncate -s 4M {d}/priv/secret && truncate -s 4M {d}/v600 && "
                         f"chmod 600 {d}/v600 && truncate -s 4M {d}/v640 && chmod 640 {d}/v640")
    os.chown(mnt.p(d, "v640"), VICTIM, 2000)
    write(mnt.p(d, "v640"), b"group may read")
    before = set(mnt.bd.paths())
    for cmd in (f"ln -s priv/secret {d}/s1",       # a directory the caller cannot search
                f"ln -s v600 {d}/s2",              # a file the caller cannot read
                f"ln -s {mnt.p(d, 'v640')} {d}/s3"):  # group bits, not a member
        r = as_user(mnt, ATTACKER, cmd, rc=1)
        assert "Permission denied" in r.stderr, (cmd, r.stderr)
    r = as_user(mnt, ATTACKER, f"ln {d}/v600 {d}/c1", rc=1)
    assert "Permission denied" in r.stderr or "Operation not permitted" in r.stderr
    assert set(mnt.bd.paths()) == before
    # A member of the file's group may: the snapshot is then the caller's.
    as_user(mnt, ATTACKER, f"ln -s v640 {d}/s4", groups=[2000])
    st = os.lstat(mnt.p(d, "s4"))
    snap = mnt.bd.info(f"{d}/s4")
    assert os.readlink(mnt.p(d, "s4")) == "v640@s4" and snap["uid"] == ATTACKER
    assert as_user(mnt, ATTACKER, f"head -c 14 {d}/s4").stdout == "group may read"
    # Nothing pins the victim's private file.
    as_user(mnt, VICTIM, f"rm {d}/v600 {d}/priv/secret")


def test_a_snapshot_link_never_leads_to_another_users_file(mnt, d):
    os.chmod(mnt.p(d), 0o777)   # shared, not sticky: the kernel lets a member replace files
    as_user(mnt, VICTIM, f"truncate -s 4M {d}/vm.img && printf victim > {d}/vm.img && "
                         f"chmod 644 {d}/vm.img && ln -s vm.img {d}/vm-snap")
    # The attacker may write in the directory, but not at the name the link points to.
    r = as_user(mnt, ATTACKER, f"truncate -s 4M {d}/planted && mv -f {d}/planted {d}/vm.img@vm-snap",
                rc=1)
    assert "File exists" in r.stderr, r.stderr
    assert as_user(mnt, VICTIM, f"head -c 6 {d}/vm-snap").stdout == "victim"
    # Planted first: the victim's snapshot is refused rather than pointed at it.
    as_user(mnt, ATTACKER, f"truncate -s 4M {d}/vm.img@later")
    r = as_user(mnt, VICTIM, f"ln -s vm.img {d}/later", rc=1)
    assert "File exists" in r.stderr, r.stderr
    assert "later" not in os.listdir(mnt.p(d))


# ---- 5. nobody exhausts what everyone shares ------------------------------------------

def test_xattr_space_of_a_file_is_capped(mnt, d):
    as_user(mnt, NOBODY, f"touch {d}/x")
    value = "v" * 300
    failed = None
    for i in range(40):
        r = as_user(mnt, NOBODY, f"setfattr -n user.k{i} -v {value} {d}/x", rc=None)
        if r.returncode:
            failed = i, r.stderr
            break
    assert failed and "No space left on device" in failed[1], failed
    assert 10 <= failed[0] <= 14, failed      # 4096 bytes of tags: 13 of these
    stored = sum(len(t) for t in tags_of(mnt.bd, f"{d}/x") if t.startswith("bd.x="))
    assert 3500 < stored <= 4096
    r = as_user(mnt, NOBODY, f"setfattr -n user.big -v {'b' * 2000} {d}/x", rc=1)
    assert "Numerical result out of range" in r.stderr       # ERANGE: past one tag


@pytest.mark.long
def test_users_stop_at_the_metadata_reserve_and_root_goes_on(tmp_path_factory, tmp_path):
    img = tmp_path_factory.mktemp("pv") / "small-mda.img"
    sh("truncate", "-s", "1G", img)
    loop = sh("losetup", "--find", "--show", img).stdout.strip()
    vg, name = "vg_mda" + uuid.uuid4().hex[:4], "md" + uuid.uuid4().hex[:6]
    sh("vgcreate", "-q", "--metadatasize", "1m", vg, loop)
    bd = None
    m = None
    try:
        from conftest import Bd
        bd = Bd(name, vg, loop, str(img))
        bd.run("export", "create", name, "--vg", vg, "--size", "256M")
        size = int(sh("vgs", "--noheadings", "--units", "b", "--nosuffix", "-o", "vg_mda_size",
                      vg).stdout)
        reserve = max(256 << 10, size // 16)

        def room():
            return int(sh("vgs", "--noheadings", "--units", "b", "--nosuffix", "-o",
                          "vg_mda_free", vg).stdout)
        # Root fills the metadata to 24 KiB above the reserve (an LV with big tags).
        bd.create("/ballast", "4M")
        lv = bd.info("/ballast")["lv"]
        n = 0
        while room() > reserve + (24 << 10):
            step = min(50, max(1, (room() - reserve - (24 << 10)) // 1100))
            tags = sum((["--addtag", f"ballast{n + k}.{'x' * 1000}"] for k in range(step)), [])
            sh("lvchange", "-q", *tags, f"{vg}/{lv}")
            n += step
        m = Mount(bd, tmp_path / "m", "allow_other")
        os.chmod(m.path, 0o1777)
        err = None
        for i in range(60):
            r = as_user(m, NOBODY, f"touch f{i} && setfattr -n user.a -v {'a' * 900} f{i} && "
                                   f"setfattr -n user.b -v {'b' * 900} f{i} && mkdir d{i}", rc=None)
            if r.returncode:
                err = r.stderr
                break
        assert err and "No space left on device" in err, err
        assert room() > reserve - (8 << 10)               # the users stopped at the reserve
        bd.create("/after.img", "4M")                       # root goes on
        sh("lvcreate", "-q", "--type", "thin", "-V", "4M", "--thinpool", "pool", "-n", "lvmtoo", vg)
    finally:
        if m:
            m.unmount()
        sh("vgremove", "-f", "-y", vg, check=False)
        sh("losetup", "-d", loop, check=False)
        os.unlink(img)


def test_users_fill_the_pool_only_to_its_threshold(tmp_path_factory, tmp_path):
    bd = make_export(tmp_path_factory.mktemp("pv"), "f" + uuid.uuid4().hex[:6],
                     pool_size="128M", extra=("--threshold", "60"))
    m = None
    try:
        ex = bd.json("export", "info", bd.name)
        assert ex["when_full"] == "error"                   # a full pool fails writes at once
        assert sh("lvs", "--noheadings", "-o", "lv_when_full", f"{bd.vg}/pool").stdout.strip() == "error"
        bd.create("/root.img", "32M")
        m = Mount(bd, tmp_path / "m", "allow_other", "resgid=3000")
        os.chmod(m.path, 0o1777)
        r = as_user(m, NOBODY, "truncate -s 120M fill && dd if=/dev/urandom of=fill bs=1M "
                               "count=120 conv=notrunc status=none", rc=1)
        assert "No space left on device" in r.stderr, r.stderr
        used = bd.json("export", "info", bd.name)["data_percent"]
        assert 55 < used <= 61, used
        # A member of -o resgid, and root, keep the reserve.
        as_user(m, 1003, "truncate -s 8M extra && dd if=/dev/urandom of=extra bs=1M count=8 "
                         "conv=notrunc status=none", groups=[3000])
        with open(bd.device("/root.img"), "r+b") as f:
            for _ in range(8):
                f.write(os.urandom(MiB))
            os.fsync(f.fileno())
        assert bd.json("export", "info", bd.name)["data_percent"] > 67
        # A user's growth stops at the threshold too.
        r = as_user(m, NOBODY, "truncate -s 512M fill", rc=1)
        assert "No space left on device" in r.stderr, r.stderr
    finally:
        if m:
            m.unmount()
        destroy(bd)


# ---- 7. no terminal or log injection ---------------------------------------------------

def test_control_characters_in_names_are_refused_and_logged_escaped(mnt, d):
    r = as_user(mnt, NOBODY, f"touch \"{d}/evil$(printf \"\\033[2J\\nbdfs: all good\")\"", rc=1)
    assert "Invalid argument" in r.stderr, r.stderr
    log = mnt.logtext()
    assert "\x1b" not in log and "\nbdfs: all good" not in log
    assert "\\x1b[2J\\x0abdfs: all good" in log
