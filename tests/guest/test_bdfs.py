"""bdfs, the FUSE view of an export, driven by ordinary tools on real LVM.

Each test mounts bdfs (the built binary) on a directory in the guest and uses
coreutils, qemu-img/qemu-io, dd and tests/tools/bdfs_iotool.cc (built by meson)
for the syscalls coreutils does not expose.
"""
import errno
import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import time
import uuid

import pytest

from bdfs_mount import BDFS, Mount, mounted
from conftest import BUILD, destroy, make_export, sh
from devio import read_at as read, write_at as write

IOTOOL = os.path.join(BUILD, "fuse-view", "bdfs-iotool")
MiB = 1 << 20


@pytest.fixture(scope="module")
def fs_bd(tmp_path_factory):
    b = make_export(tmp_path_factory.mktemp("pv"), "f" + uuid.uuid4().hex[:6])
    yield b
    destroy(b)


@pytest.fixture(scope="module")
def mnt(fs_bd, tmp_path_factory):
    m = Mount(fs_bd, tmp_path_factory.mktemp("mnt") / "bd", "allow_other", "dir_mode=1777")
    yield m
    m.unmount()


@pytest.fixture
def d(mnt):
    """A fresh directory in the shared mount, so tests don't see each other's files."""
    name = "t" + uuid.uuid4().hex[:6]
    os.mkdir(mnt.p(name))
    os.chmod(mnt.p(name), 0o1777)   # kept in a bd.dattr tag; every test user may write
    return name


def lv_of(bd, path):
    return bd.info(path)["lv"]


def lv_origin(bd, path):
    return sh("lvs", "--noheadings", "-o", "origin", f"{bd.vg}/{lv_of(bd, path)}").stdout.strip()


def sha(path, size=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(size) if size else f.read())
    return h.hexdigest()


# ---- the seed's examples, verbatim ------------------------------------------------

def test_seed_examples_verbatim(mnt, d):
    cwd = mnt.p(d)
    for cmd in ("touch lv1; truncate -s 1G lv1", "ln lv1 lv2", "ln -s lv1 lv1-ss"):
        r = subprocess.run(cmd, shell=True, cwd=cwd, capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", (cmd, r.stderr, mnt.logtext())
    assert os.stat(mnt.p(d, "lv1")).st_size == 1 << 30
    assert os.stat(mnt.p(d, "lv2")).st_size == 1 << 30
    assert os.readlink(mnt.p(d, "lv1-ss")) == "lv1@lv1-ss"
    assert os.stat(mnt.p(d, "lv1-ss")).st_size == 1 << 30  # follows to the snapshot
    snap = mnt.bd.info(f"{d}/lv1-ss")
    assert snap["type"] == "snapshot" and snap["origin"] == f"{d}/lv1" and snap["read_only"]
    assert lv_origin(mnt.bd, f"{d}/lv2") == lv_of(mnt.bd, f"{d}/lv1")
    assert "lv1-ss -> lv1@lv1-ss" in mnt.run(f"ls -l {d}").stdout


# ---- create and size ------------------------------------------------------------

def test_touch_creates_an_empty_file_until_sized(mnt, d):
    mnt.run(f"touch {d}/f")
    st = os.stat(mnt.p(d, "f"))
    assert st.st_size == 0 and stat.S_ISREG(st.st_mode)
    assert mnt.bd.info(f"{d}/f")["type"] == "thin"  # a real volume already
    assert read(mnt.p(d, "f"), 10) == b""
    mnt.run(f"printf hello >> {d}/f")  # the first write sizes it: one extent
    assert os.stat(mnt.p(d, "f")).st_size == 4 * MiB
    assert read(mnt.p(d, "f"), 5) == b"hello"


def test_truncate_grows_and_refuses_to_shrink(mnt, d):
    f = mnt.p(d, "g")
    mnt.run(f"truncate -s 64M {d}/g")
    assert os.stat(f).st_size == 64 * MiB and mnt.bd.info(f"{d}/g")["size"] == 64 * MiB
    write(f, b"data", 10 * MiB)
    r = mnt.run(f"truncate -s 32M {d}/g", rc=1)
    assert "Invalid argument" in r.stderr
    assert "refusing to shrink" in mnt.logtext()
    assert os.stat(f).st_size == 64 * MiB and read(f, 4, 10 * MiB) == b"data"
    mnt.run(f"truncate -s 100M {d}/g")
    assert os.stat(f).st_size == 100 * MiB and read(f, 4, 10 * MiB) == b"data"
    # Size 0 is "empty the file" (O_TRUNC, `: >`): data discarded, volume kept.
    mnt.run(f": > {d}/g")
    assert os.stat(f).st_size == 0
    mnt.run(f"truncate -s 64M {d}/g")
    assert read(f, 4, 10 * MiB) == b"\0" * 4


def test_allow_shrink_mount_option(fs_bd, tmp_path):
    fs_bd.create("/shrinkme", "64M")
    m = Mount(fs_bd, tmp_path / "s", "allow_shrink")
    try:
        m.run("truncate -s 16M shrinkme")
        assert os.stat(m.p("shrinkme")).st_size == 16 * MiB
    finally:
        m.unmount()


def test_qemu_img_raw_and_qcow2(mnt, d):
    mnt.run(f"qemu-img create -q -f raw {d}/r.img 64M")
    assert os.stat(mnt.p(d, "r.img")).st_size == 64 * MiB
    mnt.run(f"qemu-img create -q -f qcow2 {d}/q.qcow2 1G")
    small = os.stat(mnt.p(d, "q.qcow2")).st_size
    assert small <= 4 * MiB
    # Guest writes land past the end of the qcow2 file: the LV grows under them.
    mnt.run(f"qemu-io -f qcow2 -c 'write -P 0xab 0 24M' {d}/q.qcow2")
    assert 24 * MiB < os.stat(mnt.p(d, "q.qcow2")).st_size <= 64 * MiB
    mnt.run(f"qemu-img check -q {d}/q.qcow2")
    mnt.run(f"qemu-io -f qcow2 -c 'read -P 0xab 0 24M' {d}/q.qcow2")
    info = json.loads(mnt.run(f"qemu-img info --output=json {d}/q.qcow2").stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == 1 << 30


# ---- links, copies, renames, deletes -----------------------------------------

def test_ln_is_an_instant_writable_clone(mnt, d):
    a, b = mnt.p(d, "a"), mnt.p(d, "b")
    mnt.run(f"truncate -s 16M {d}/a")
    write(a, b"A" * 4096)
    mnt.run(f"ln {d}/a {d}/b")
    assert lv_origin(mnt.bd, f"{d}/b") == lv_of(mnt.bd, f"{d}/a")
    assert read(b, 4096) == b"A" * 4096
    write(b, b"B" * 4096)
    assert read(a, 4096) == b"A" * 4096 and read(b, 4096) == b"B" * 4096
    assert os.stat(b).st_mode & 0o7777 == os.stat(a).st_mode & 0o7777


def test_symlink_is_a_read_only_snapshot(mnt, d):
    a = mnt.p(d, "a")
    mnt.run(f"truncate -s 16M {d}/a")
    write(a, b"old!")
    mnt.run(f"cd {d} && ln -s a a-snap")
    write(a, b"new!")
    assert read(mnt.p(d, "a-snap"), 4) == b"old!"
    assert read(mnt.p(d, "a@a-snap"), 4) == b"old!"  # the name the link points to
    assert os.readlink(mnt.p(d, "a-snap")) == "a@a-snap"
    with pytest.raises(OSError) as e:
        open(mnt.p(d, "a-snap"), "r+b")
    assert e.value.errno in (errno.EROFS, errno.EACCES)
    # A link made elsewhere names its origin relative to itself.
    os.mkdir(mnt.p(d, "snaps"))
    mnt.run(f"cd {d}/snaps && ln -s ../a a-2")
    assert os.readlink(mnt.p(d, "snaps", "a-2")) == "../a@a-2"
    assert read(mnt.p(d, "snaps", "a-2"), 4) == b"new!"
    mnt.run(f"rm {d}/a-snap {d}/snaps/a-2")
    assert sorted(os.listdir(mnt.p(d))) == ["a", "snaps"]


def copy_as_cp_sparse_never(src, dst):
    """The calls `cp --sparse=never` of coreutils 9.1 (Debian 12) makes for a
    sparse source on bdfs: SEEK_DATA and SEEK_HOLE, copy_file_range of the
    data between them, then zeros written in 128 KiB blocks up to the size. coreutils 9.7 (Debian 13)
    reads and writes every block instead (no copy offload under
    --sparse=never, seen with strace), so this makes 9.1's calls itself, on
    both releases, and the tests also run the installed cp."""
    fin = os.open(src, os.O_RDONLY)
    fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        size = os.fstat(fin).st_size
        # bdfs reports one data extent, from 0 to where dm-thin's mappings end.
        assert os.lseek(fin, 0, os.SEEK_DATA) == 0
        data = os.lseek(fin, 0, os.SEEK_HOLE)
        done = 0
        while done < data:
            n = os.copy_file_range(fin, fout, data - done, done, done)
            assert n > 0, f"copy_file_range returned {n} at {done} of {data}"
            done += n
        zeros = bytes(128 * 1024)
        while done < size:
            done += os.pwrite(fout, zeros[:min(len(zeros), size - done)], done)
    finally:
        os.close(fin)
        os.close(fout)


def test_cp_of_a_whole_file_is_an_instant_clone(mnt, d):
    # A fully written file: cp uses copy_file_range for all of it.
    mnt.run(f"truncate -s 16M {d}/full")
    digest = mnt.bd.fill(f"{d}/full", 16, "full")
    mnt.run(f"cp {d}/full {d}/copy")
    assert lv_origin(mnt.bd, f"{d}/copy") == lv_of(mnt.bd, f"{d}/full")
    assert sha(mnt.p(d, "copy")) == digest
    # A sparse source: cp --sparse=never (9.1) hands over the data up to
    # SEEK_HOLE, which clones it, and writes the rest as zeros, which bdfs
    # does not store: the clone maps what its origin maps.
    mnt.run(f"truncate -s 64M {d}/sparse")
    write(mnt.p(d, "sparse"), b"x" * 4096, 8 * MiB)
    copy_as_cp_sparse_never(mnt.p(d, "sparse"), mnt.p(d, "sparse-copy"))
    assert lv_origin(mnt.bd, f"{d}/sparse-copy") == lv_of(mnt.bd, f"{d}/sparse")
    assert sha(mnt.p(d, "sparse-copy")) == sha(mnt.p(d, "sparse"))
    assert os.stat(mnt.p(d, "sparse-copy")).st_blocks == os.stat(mnt.p(d, "sparse")).st_blocks
    # The installed cp, however it copies, copies the data. Debian 13's writes
    # every block, zeros too, and never truncates: bdfs grows such a writer in
    # 32 MiB steps, so that copy ends in zeros past the source's size (the LV
    # is the file's size: fuse-view/README.md, "create and size").
    mnt.run(f"cp --sparse=never {d}/sparse {d}/sparse-cp")
    with open(mnt.p(d, "sparse"), "rb") as f:
        want = f.read()
    with open(mnt.p(d, "sparse-cp"), "rb") as f:
        got = f.read()
    assert got[:len(want)] == want
    assert got[len(want):] == bytes(len(got) - len(want))
    assert len(got) - len(want) < 32 * MiB + 4 * MiB, len(got)
    # The copy is the copier's, not the source owner's.
    os.chown(mnt.p(d, "full"), 1000, 1000)
    mnt.run(f"cp {d}/full {d}/copy2")
    assert os.stat(mnt.p(d, "copy2")).st_uid == 0


def test_cp_again_onto_a_clone_someone_holds_copies_the_new_data(mnt, d):
    # cp clones; a program keeps the copy open; the source changes; cp runs
    # again. The target is not new (no clone): its data is copied, not taken
    # for "already cloned".
    mnt.run(f"truncate -s 8M {d}/src")
    mnt.bd.fill(f"{d}/src", 8, "first")      # all of it written: cp hands it all over
    mnt.run(f"cp {d}/src {d}/dst")
    assert lv_origin(mnt.bd, f"{d}/dst") == lv_of(mnt.bd, f"{d}/src")
    held = os.open(mnt.p(d, "dst"), os.O_RDONLY)
    try:
        second = mnt.bd.fill(f"{d}/src", 8, "second")
        mnt.run(f"cp {d}/src {d}/dst")
        assert sha(mnt.p(d, "dst")) == sha(mnt.p(d, "src")) == second
    finally:
        os.close(held)


def test_cp_of_a_sparse_file_and_partial_ranges_copy_data(mnt, d):
    src = mnt.p(d, "src")
    mnt.run(f"truncate -s 16M {d}/src")
    write(src, os.urandom(MiB), 4 * MiB)
    mnt.run(f"cp {d}/src {d}/plain")  # cp reads and writes (it sees holes)
    assert sha(mnt.p(d, "plain")) == sha(src)
    mnt.run(f"truncate -s 16M {d}/part")
    r = mnt.run(f"{IOTOOL} cfr {d}/src {d}/part {4 * MiB} {MiB} {MiB}")
    assert r.stdout.strip() == f"copied {MiB}"
    assert read(mnt.p(d, "part"), MiB, MiB) == read(src, MiB, 4 * MiB)
    assert lv_origin(mnt.bd, f"{d}/part") == ""  # a data copy, not a clone


def seek(fd, off, whence):
    try:
        return os.lseek(fd, off, whence)
    except OSError as e:
        return errno.errorcode[e.errno]


def test_seek_data_and_seek_hole_follow_the_thin_mappings(mnt, d, tmp_path):
    f = mnt.p(d, "holey")
    mnt.run(f"truncate -s 64M {d}/holey")
    chunk = mnt.bd.json("export", "info", mnt.bd.name)["chunk_size"]
    fd = os.open(f, os.O_RDONLY)
    try:
        # Nothing mapped: all of it is a hole.
        assert [seek(fd, 0, os.SEEK_DATA), seek(fd, 0, os.SEEK_HOLE)] == ["ENXIO", 0]
        write(f, os.urandom(4 * MiB), 0)
        assert [seek(fd, 0, os.SEEK_DATA), seek(fd, MiB, os.SEEK_DATA),
                seek(fd, 4 * MiB, os.SEEK_DATA)] == [0, MiB, "ENXIO"]
        assert [seek(fd, 0, os.SEEK_HOLE), seek(fd, 5 * MiB, os.SEEK_HOLE),
                seek(fd, 64 * MiB, os.SEEK_HOLE)] == [4 * MiB, 5 * MiB, "ENXIO"]
        assert os.stat(f).st_blocks * 512 == 4 * MiB
        # tar stores the data only (without SEEK_HOLE it stored all 64 MiB).
        sh("tar", "--sparse", "-cf", tmp_path / "holey.tar", "-C", mnt.p(d), "holey")
        assert os.stat(tmp_path / "holey.tar").st_size < 5 * MiB
        # Data past a hole: the data runs to the highest mapped block, and the
        # hole below it reads as data (zeros).
        write(f, b"y" * 4096, 40 * MiB)
        assert [seek(fd, 4 * MiB, os.SEEK_DATA), seek(fd, 0, os.SEEK_HOLE)] == [4 * MiB,
                                                                                40 * MiB + chunk]
    finally:
        os.close(fd)
    digest = sha(f)
    # qemu-img copies the data (and skips zeros itself): the copy maps only that.
    mnt.run(f"qemu-img convert -f raw -O raw {d}/holey {d}/converted")
    assert sha(mnt.p(d, "converted")) == digest
    assert os.stat(mnt.p(d, "converted")).st_blocks * 512 <= 5 * MiB
    # cp (9.1) reads up to the data's end, punching holes where it reads zeros.
    mnt.run(f"cp {d}/holey {d}/copied")
    assert sha(mnt.p(d, "copied")) == digest
    assert os.stat(mnt.p(d, "copied")).st_blocks * 512 <= 5 * MiB


def test_mv_renames_across_directories_and_moves_directories(mnt, d):
    mnt.run(f"mkdir -p {d}/x/y {d}/z && truncate -s 8M {d}/x/y/v.img")
    write(mnt.p(d, "x", "y", "v.img"), b"keep")
    mnt.run(f"mv {d}/x/y/v.img {d}/z/w.img")
    assert mnt.bd.paths().count(f"{d}/z/w.img") == 1
    mnt.run(f"mv {d}/z {d}/x/y/moved")
    assert read(mnt.p(d, "x", "y", "moved", "w.img"), 4) == b"keep"
    assert f"{d}/x/y/moved/w.img" in mnt.bd.paths()
    assert not os.path.exists(mnt.p(d, "z"))
    # Replacing an existing file, as rename(2) does.
    mnt.run(f"truncate -s 4M {d}/other && mv -f {d}/other {d}/x/y/moved/w.img")
    assert os.stat(mnt.p(d, "x", "y", "moved", "w.img")).st_size == 4 * MiB


def test_rm_of_an_open_file_waits_for_the_last_close(mnt, d):
    f = mnt.p(d, "open.img")
    mnt.run(f"truncate -s 8M {d}/open.img")
    write(f, b"still here")
    fd = os.open(f, os.O_RDWR)
    try:
        mnt.run(f"rm {d}/open.img")
        assert not os.path.exists(f) and f"{d}/open.img" not in mnt.bd.paths()
        assert os.pread(fd, 10, 0) == b"still here"  # POSIX: the data outlives the name
        mnt.run(f"touch {d}/open.img")  # the name is free again
    finally:
        os.close(fd)
    for _ in range(100):
        if not any(".bdfs-unlinked" in p for p in mnt.bd.paths()):
            break
        time.sleep(0.2)
    assert not any(".bdfs-unlinked" in p for p in mnt.bd.paths())


def test_mkdir_and_rmdir_persist(mnt, d, tmp_path):
    mnt.run(f"mkdir {d}/empty {d}/full && touch {d}/full/f")
    other = Mount(mnt.bd, tmp_path / "second")  # a second mount sees the same tree
    try:
        assert sorted(os.listdir(other.p(d))) == ["empty", "full"]
    finally:
        other.unmount()
    r = mnt.run(f"rmdir {d}/full", rc=1)
    assert "not empty" in r.stderr
    mnt.run(f"rmdir {d}/empty")
    assert os.listdir(mnt.p(d)) == ["full"]
    r = mnt.run(f"mkdir {d}/full/f/sub", rc=1)
    assert "Not a directory" in r.stderr


def as_user(mnt, uid, cmd, rc=0):
    """Runs a shell command in the mount as user and group `uid`."""
    return mnt.run(f"setpriv --reuid {uid} --regid {uid} --clear-groups sh -c '{cmd}'", rc=rc)


def pool_tags(bd):
    return sh("lvs", "--noheadings", "-o", "lv_tags", f"{bd.vg}/pool").stdout.strip().split(",")


@pytest.mark.long
def test_directories_keep_owner_and_mode(mnt, d, tmp_path):
    mnt.run(f"mkdir -m 750 {d}/priv && chown 1000:1000 {d}/priv")
    st = os.stat(mnt.p(d, "priv"))
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 1000, 0o750)
    as_user(mnt, 1000, f"touch {d}/priv/mine")
    assert "Permission denied" in as_user(mnt, 1001, f"touch {d}/priv/theirs", rc=1).stderr
    assert "Operation not permitted" in as_user(mnt, 1001, f"chmod 777 {d}/priv", rc=1).stderr
    as_user(mnt, 1001, f"mkdir {d}/byuser")                      # owner is the caller
    st = os.stat(mnt.p(d, "byuser"))
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1001, 1001, 0o755)
    # an implied directory (made by a volume path) keeps a mode and outlives its volume
    mnt.bd.create(f"/{d}/impl/v.img", "4M")
    mnt.run(f"chmod 700 {d}/impl && rm {d}/impl/v.img")
    assert os.stat(mnt.p(d, "impl")).st_mode & 0o7777 == 0o700
    # mv carries owner and mode; rmdir drops them
    mnt.run(f"mv {d}/priv {d}/moved")
    other = Mount(mnt.bd, tmp_path / "again")               # a new daemon reads the tags
    try:
        st = os.stat(other.p(d, "moved"))
        assert (st.st_uid, st.st_mode & 0o7777) == (1000, 0o750)
        assert os.stat(other.p(d)).st_mode & 0o7777 == 0o1777
    finally:
        other.unmount()
    # a directory moved over an empty one replaces it, owner and mode included
    mnt.run(f"mkdir -m 700 {d}/target")
    mnt.bd.create(f"/{d}/implied/v.img", "4M")
    mnt.run(f"mv -T {d}/implied {d}/target")                 # rename(2) over it
    assert os.stat(mnt.p(d, "target")).st_mode & 0o7777 == 0o1777   # -o dir_mode, not 0700
    mnt.run(f"rm {d}/target/v.img && rmdir {d}/target")
    # setgid directories hand their group down
    mnt.run(f"mkdir {d}/sg && chown 0:1001 {d}/sg && chmod 2775 {d}/sg")
    mnt.run(f"mkdir {d}/sg/child && touch {d}/sg/f")
    child, f = os.stat(mnt.p(d, "sg", "child")), os.stat(mnt.p(d, "sg", "f"))
    assert child.st_gid == 1001 and child.st_mode & 0o2000 and f.st_gid == 1001
    mnt.run(f"rm {d}/sg/f && rmdir {d}/sg/child {d}/sg")
    mnt.run(f"rm {d}/moved/mine && rmdir {d}/moved {d}/impl {d}/byuser")
    assert not [t for t in pool_tags(mnt.bd) if t.startswith("bd.dattr=") and f"{d}/" in t]
    # cp -a of a tree (it sets each directory's mode and owner) works and keeps them
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_bytes(b"data")
    os.chmod(src / "sub", 0o701)
    mnt.run(f"cp -a {src} {d}/copy")
    assert os.stat(mnt.p(d, "copy", "sub")).st_mode & 0o7777 == 0o701
    got = open(mnt.p(d, "copy", "sub", "f"), "rb").read()
    assert got[:4] == b"data" and not got[4:].strip(b"\0")    # a volume: whole extents


# ---- attributes -------------------------------------------------------------

def test_user_xattrs_persist(mnt, d):
    f = mnt.p(d, "x")
    mnt.run(f"touch {d}/x")
    os.setxattr(f, "user.note", b"hello world")
    assert os.getxattr(f, "user.note") == b"hello world"
    assert os.listxattr(f) == ["user.note"]
    assert mnt.bd.info(f"{d}/x")["xattrs"]["user.note"] == "hello world"
    assert "bd.x=user.note=hello!20world" in sh("lvs", "--noheadings", "-o", "lv_tags",
                                                f"{mnt.bd.vg}/{lv_of(mnt.bd, f'{d}/x')}").stdout
    with pytest.raises(OSError) as e:
        os.setxattr(f, "user.big", b"x" * 2000)
    assert e.value.errno == errno.ERANGE
    with pytest.raises(OSError) as e:
        os.setxattr(f, "security.no", b"1")
    assert e.value.errno == errno.ENOTSUP
    os.removexattr(f, "user.note")
    assert os.listxattr(f) == []


def test_trusted_xattrs_are_root_only(mnt, d):
    """trusted.* persists (libvirt's DAC driver remembers owners there); the
    kernel keeps it from users without CAP_SYS_ADMIN, and bdfs lists it only to root."""
    f = mnt.p(d, "t")
    mnt.run(f"touch {d}/t && chmod 666 {d}/t && setfattr -n user.u -v 1 {d}/t")
    os.setxattr(f, "trusted.libvirt.security.dac", b"+0:+0")
    assert os.getxattr(f, "trusted.libvirt.security.dac") == b"+0:+0"
    assert sorted(os.listxattr(f)) == ["trusted.libvirt.security.dac", "user.u"]
    assert mnt.bd.info(f"{d}/t")["xattrs"]["trusted.libvirt.security.dac"] == "+0:+0"
    user = f"setpriv --reuid 1000 --regid 1000 --clear-groups"
    listed = mnt.run(f"{user} getfattr -d -m - {d}/t").stdout
    assert "user.u" in listed and "trusted" not in listed, listed
    r = mnt.run(f"{user} setfattr -n trusted.x -v 1 {d}/t", rc=1)
    assert "Operation not permitted" in r.stderr, r.stderr
    os.removexattr(f, "trusted.libvirt.security.dac")
    assert os.listxattr(f) == ["user.u"]


def test_chmod_chown_and_utimes_persist(mnt, d):
    f = mnt.p(d, "o")
    mnt.run(f"touch {d}/o && chmod 640 {d}/o && chown 1000:1001 {d}/o && touch -m -d @1700000000 {d}/o")
    info = mnt.bd.info(f"{d}/o")
    assert (info["uid"], info["gid"], info["mode"]) == (1000, 1001, 0o640)
    st = os.stat(f)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777, int(st.st_mtime)) == (
        1000, 1001, 0o640, 1700000000)


def test_stat_reports_lv_size_mapped_blocks_and_chunk_size(mnt, d):
    f = mnt.p(d, "s")
    mnt.run(f"truncate -s 64M {d}/s")
    assert os.stat(f).st_blocks == 0
    mnt.run(f"dd if=/dev/urandom of={d}/s bs=1M count=2 seek=3 conv=notrunc,fsync status=none")
    st = os.stat(f)
    chunk = mnt.bd.json("export", "info", mnt.bd.name)["chunk_size"]
    assert st.st_size == 64 * MiB and st.st_blksize == chunk
    assert st.st_blocks * 512 == 2 * MiB
    sv = os.statvfs(mnt.path)
    ex = mnt.bd.json("export", "info", mnt.bd.name)
    assert sv.f_frsize == chunk and sv.f_blocks * sv.f_frsize == ex["size"]
    assert sv.f_bfree < sv.f_blocks


# ---- I/O ---------------------------------------------------------------------

def test_odirect_fsync_punch_hole_and_zero_range(mnt, d):
    f = mnt.p(d, "io")
    mnt.run(f"truncate -s 16M {d}/io")
    data = os.urandom(MiB)
    subprocess.run([IOTOOL, "dwrite", f, str(2 * MiB)], input=data, check=True)
    out = subprocess.run([IOTOOL, "dread", f, str(2 * MiB), str(MiB)], capture_output=True,
                         check=True).stdout
    assert out == data
    # A direct read larger than one FUSE request (1 MiB) comes back whole, in
    # order, holes as zeros.
    out = subprocess.run([IOTOOL, "dread", f, str(MiB), str(3 * MiB)], capture_output=True,
                         check=True).stdout
    assert out == b"\0" * MiB + data + b"\0" * MiB
    dev = mnt.bd.device(f"{d}/io")
    assert read(dev, MiB, 2 * MiB) == data  # straight on the LV
    blocks = os.stat(f).st_blocks
    # Punch 512 KiB from an unaligned start: whole chunks are discarded, edges zeroed.
    mnt.run(f"{IOTOOL} fallocate {d}/io punch {2 * MiB + 1000} {512 << 10}")
    after = read(f, MiB, 2 * MiB)
    assert after[:1000] == data[:1000]
    assert after[1000:1000 + (512 << 10)] == b"\0" * (512 << 10)
    assert after[1000 + (512 << 10):] == data[1000 + (512 << 10):]
    assert os.stat(f).st_blocks < blocks
    mnt.run(f"{IOTOOL} fallocate {d}/io zero-keep {2 * MiB} {MiB}")
    assert read(f, MiB, 2 * MiB) == b"\0" * MiB
    # ZERO_RANGE past the end grows the file, in the documented steps of growth past
    # EOF (at least 32 MiB, whole extents: fuse-view/README.md, docs/bdfs.8).
    mnt.run(f"{IOTOOL} fallocate {d}/io zero {16 * MiB} {4 * MiB}")
    size = os.stat(f).st_size
    assert size >= 48 * MiB and size % (4 * MiB) == 0, size
    assert read(f, 4 * MiB, 16 * MiB) == b"\0" * (4 * MiB)


# ---- visibility ----------------------------------------------------------------

@pytest.mark.serial  # any activation elsewhere moves the cache key (uevent_seqnum)
def test_a_stat_after_a_change_through_the_mount_runs_no_lvs(bd, tmp_path):
    """The core's own read after a change refreshes bdfs's view, so the next
    stat costs no `lvs` (fuse-view/README.md, Costs)."""
    m = Mount(bd, tmp_path / "m", env={"BD_TRACE": "1"})
    try:
        f = m.p("v.img")
        m.run("truncate -s 8M v.img")
        assert os.stat(f).st_size == 8 << 20   # the view is current
        start = len(m.logtext())
        os.truncate(f, 16 << 20)               # read under the lock, lvextend, read again
        st = os.stat(f)
        trace = m.logtext()[start:]
        assert st.st_size == 16 << 20
        assert len(re.findall(r"^bd: \+\d+ ms run: lvextend ", trace, re.M)) == 1, trace
        assert len(re.findall(r"^bd: \+\d+ ms run: lvs ", trace, re.M)) == 2, trace
        start = len(m.logtext())
        assert os.stat(f).st_size == 16 << 20 and os.listdir(m.path) == ["v.img"]
        assert "run: " not in m.logtext()[start:]
    finally:
        m.unmount()


def test_changes_made_outside_bdfs_show_at_once(mnt, d):
    bd = mnt.bd
    bd.create(f"/{d}/made-by-bdctl", "8M")
    assert "made-by-bdctl" in os.listdir(mnt.p(d))
    bd.run("rename", bd.spec(f"/{d}/made-by-bdctl"), f"/{d}/renamed")
    assert os.listdir(mnt.p(d)) == ["renamed"]
    assert os.stat(mnt.p(d, "renamed")).st_size == 8 * MiB
    bd.run("delete", bd.spec(f"/{d}/renamed"))
    assert os.listdir(mnt.p(d)) == []
    lv = "plain" + uuid.uuid4().hex[:6]
    sh("lvcreate", "-q", "--type", "thin", "-V", "8M", "--thinpool", "pool", "-n", lv, bd.vg)
    assert lv in os.listdir(mnt.path)  # a foreign thin LV, under its LV name
    sh("lvremove", "-q", "-y", f"{bd.vg}/{lv}")
    assert lv not in os.listdir(mnt.path)


# ---- bad input and faults ----------------------------------------------------------

def test_bad_names_are_refused_not_mangled(mnt, d):
    before = mnt.bd.paths()
    with pytest.raises(OSError) as e:
        open(mnt.p(d, "a" * 256), "w")
    assert e.value.errno == errno.ENAMETOOLONG
    os.mkdir(mnt.p(d, "é" * 127))  # 254 bytes, 762 tag characters: fits
    with pytest.raises(OSError) as e:  # each name fits NAME_MAX, the path not a tag
        open(mnt.p(d, "é" * 127, "é" * 127), "w")
    assert e.value.errno == errno.ENAMETOOLONG
    with pytest.raises(OSError) as e:
        open(os.path.join(mnt.p(d).encode(), b"bad\xffutf8"), "w")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        open(mnt.p(".bdfs-unlinked"), "w")
    assert e.value.errno == errno.EPERM
    assert mnt.bd.paths() == before


def test_zeros_land_in_a_pool_that_does_not_zero_new_blocks(tmp_path_factory, tmp_path):
    """bdfs does not store the zeros `cp --sparse=never` writes into a fresh
    clone past its data: unmapped blocks read as zeros. A pool made with -Zn
    hands out blocks with their old contents, though: there the zeros must
    land, or a later partial write to such a block shows old data where cp
    put zeros."""
    bd = make_export(tmp_path_factory.mktemp("pv"), "z" + uuid.uuid4().hex[:6])
    m = None
    try:
        bd.create("/z.img", "8M")                 # the pool is active, nothing mapped
        pool = sh("lvs", "--noheadings", "-o", "lv_name", "-S", "segtype=thin-pool",
                  bd.vg).stdout.strip()
        sh("lvchange", "--zero", "n", f"{bd.vg}/{pool}")
        table = sh("dmsetup", "table", f"{bd.vg}-{pool}-tpool").stdout
        assert "skip_block_zeroing" in table, table
        chunk = bd.json("export", "info", bd.name)["chunk_size"]
        m = Mount(bd, tmp_path / "m")
        write(m.p("z.img"), b"x" * chunk, 0)      # the pool's first block
        # Old data where the pool's next blocks will go.
        with open(f"/dev/mapper/{bd.vg}-{pool}_tdata", "r+b") as tdata:
            tdata.seek(chunk)
            tdata.write(b"\xff" * 4 * MiB)
            tdata.flush()
            os.fsync(tdata.fileno())
        # A clone, then zeros past its data (what Debian 12's cp does).
        copy_as_cp_sparse_never(m.p("z.img"), m.p("copy.img"))
        assert lv_origin(bd, "/copy.img") == lv_of(bd, "/z.img")
        write(m.p("copy.img"), b"d" * 4096, chunk + 4096)   # part of a block cp zeroed
        assert read(m.p("copy.img"), 4096, chunk) == bytes(4096)
        assert read(m.p("copy.img"), 4096, chunk + 4096) == b"d" * 4096
        assert read(m.p("copy.img"), chunk, 0) == b"x" * chunk
    finally:
        if m:
            m.unmount()
        destroy(bd)


def test_full_pool_gives_enospc_to_the_writer(tmp_path_factory, tmp_path):
    bd = make_export(tmp_path_factory.mktemp("pv"), "p" + uuid.uuid4().hex[:6],
                     pool_size="64M", extra=("--threshold", "100"))
    m = None
    try:
        bd.create("/other", "8M")
        keep = bd.fill("/other", 4, "other")
        m = Mount(bd, tmp_path / "m")
        m.run("truncate -s 256M big")
        r = m.run("dd if=/dev/urandom of=big bs=1M count=200 conv=notrunc status=none", rc=1)
        assert "No space left on device" in r.stderr
        assert bd.checksum("/other", 4) == keep
    finally:
        if m:
            m.unmount()
        destroy(bd)


def test_kill_9_with_files_open_then_remount(fs_bd, tmp_path):
    m = Mount(fs_bd, tmp_path / "k")
    m.run("truncate -s 16M synced && truncate -s 16M bystander")
    write(m.p("bystander"), b"untouched")
    fd = os.open(m.p("synced"), os.O_RDWR)
    os.pwrite(fd, b"synced data", 0)
    os.fsync(fd)
    m.proc.send_signal(signal.SIGKILL)
    m.proc.wait()
    with pytest.raises(OSError) as e:
        os.pread(fd, 11, 0)
    assert e.value.errno in (errno.ENOTCONN, errno.EIO)
    os.close(fd)
    again = Mount(fs_bd, tmp_path / "k")  # at once, on the same mountpoint
    try:
        assert read(again.p("synced"), 11) == b"synced data"
        assert read(again.p("bystander"), 9) == b"untouched"
        again.run("touch new-after-crash")
    finally:
        again.unmount()


def test_permissions_between_two_users(mnt, d):
    assert os.stat(mnt.p(d)).st_mode & 0o7777 == 0o1777  # the d fixture's chmod
    assert os.stat(mnt.path).st_mode & 0o7777 == 0o1777  # the root: -o dir_mode=1777
    mnt.run(f"touch {d}/alice && chown 1000:1000 {d}/alice && chmod 600 {d}/alice")
    as_user(mnt, 1000, f"echo mine > {d}/alice")
    assert "Permission denied" in as_user(mnt, 1001, f"cat {d}/alice", rc=1).stderr
    assert "Operation not permitted" in as_user(mnt, 1001, f"chmod 666 {d}/alice", rc=1).stderr
    as_user(mnt, 1001, f"touch {d}/bob")
    assert os.stat(mnt.p(d, "bob")).st_uid == 1001
    # Sticky directory: a user cannot delete another's volume.
    assert as_user(mnt, 1000, f"rm -f {d}/bob", rc=1).returncode == 1
    assert os.path.exists(mnt.p(d, "bob"))
    as_user(mnt, 1001, f"rm {d}/bob")


# ---- mounting ----------------------------------------------------------------------

def test_mount_t_fuse_bdfs_via_mount_fuse3(fs_bd, tmp_path):
    where = str(tmp_path / "viamount")
    os.mkdir(where)
    # mount.fuse3 runs `bdfs` from the standard PATH: install it there for this
    # test only (test_package.py checks that the package's bdfs is the one run).
    link = "/usr/local/sbin/bdfs"
    os.makedirs("/usr/local/sbin", exist_ok=True)
    os.symlink(BDFS, link)
    try:
        r = subprocess.run(["mount", "-t", "fuse.bdfs", "-o", "allow_other", fs_bd.name, where],
                           capture_output=True, text=True)
    finally:
        os.unlink(link)
    assert r.returncode == 0, r.stderr
    try:
        assert mounted(where)
        line = [l for l in open("/proc/self/mounts") if f" {where} " in l][0]
        assert line.split()[0] == fs_bd.name and line.split()[2] == "fuse.bdfs"
        os.listdir(where)
    finally:
        sh("umount", where)
