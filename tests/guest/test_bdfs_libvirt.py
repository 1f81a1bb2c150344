"""Stock-libvirt mode: Debian 12's unmodified libvirtd, a plain `dir` pool whose
target is a bdfs mount, and every libvirt client gets thin volumes.

The daemon is /usr/sbin/libvirtd from the package (checked with `dpkg --verify`),
started in the guest with the helpers of tests/libvirt. Each test checks what
libvirt says and what LVM holds underneath. What differs from the native `bd`
pool is written down in fuse-view/README.md ("Stock-libvirt mode"); the tests
that pin those differences say so.
"""
import hashlib
import os
import re
import sys
import uuid

import pytest

from bdfs_mount import Mount
from conftest import destroy, make_export, sh

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "libvirt"))
from bdlibvirt import (LOGFILE, QEMU, STOCK_VIRSH, Daemon, build_nested_initramfs,  # noqa: E402
                       domain_xml, fds_on, run_nested_guest, vol_info)

# One Debian libvirtd on its fixed socket, and a fixed mount point.
pytestmark = pytest.mark.serial

MiB = 1 << 20
POOL = "bdfs"
MOUNT = "/srv/bdfs-stock"          # outside /tmp: QEMU runs as libvirt-qemu and must reach it


@pytest.fixture(scope="module")
def stock_daemon():
    if not os.access("/usr/sbin/libvirtd", os.X_OK):
        raise AssertionError("Debian's libvirtd is missing: apt-get install libvirt-daemon-system")
    d = Daemon("/usr")
    d.start()
    yield d
    d.stop()
    if os.path.isdir("/bdout"):
        sh("cp", LOGFILE, "/bdout/stock-libvirtd.log", check=False)


@pytest.fixture(scope="module")
def env(stock_daemon, tmp_path_factory):
    """(export, mount, virsh): a dir pool `bdfs` on a bdfs mount of a fresh export."""
    bd = make_export(tmp_path_factory.mktemp("pv"), "s" + uuid.uuid4().hex[:6], pool_size="1G")
    os.makedirs(os.path.dirname(MOUNT), exist_ok=True)
    m = Mount(bd, MOUNT, "allow_other")
    virsh = stock_daemon.virsh
    virsh("pool-define-as", POOL, "dir", "--target", MOUNT)
    virsh("pool-build", POOL)          # the mountpoint exists: libvirt leaves it as it is
    virsh("pool-start", POOL)
    yield bd, m, virsh
    virsh("pool-destroy", POOL, rc=None)
    virsh("pool-undefine", POOL, rc=None)
    m.unmount()
    destroy(bd)


def vol(name):
    return f"{name}-{uuid.uuid4().hex[:6]}.img"


def bd_info(bd, name, rc=0):
    return bd.json("info", bd.spec("/" + name), rc=rc)


def lv_attr(bd, name, field):
    return sh("lvs", "--noheadings", "-o", field, f"{bd.vg}/{bd_info(bd, name)['lv']}").stdout.strip()


def test_daemon_is_debians_unmodified_libvirtd(env):
    bd, m, virsh = env
    owner = sh("dpkg", "-S", "/usr/sbin/libvirtd").stdout
    assert owner.startswith("libvirt-daemon:"), owner
    changed = sh("dpkg", "--verify", "libvirt-daemon", "libvirt-daemon-driver-qemu",
                 check=False).stdout
    assert changed.strip() == "", f"the packaged libvirt was modified:\n{changed}"
    assert virsh.binary == STOCK_VIRSH                 # the client is Debian's too
    caps = virsh("pool-capabilities").stdout
    assert "type='dir' supported='yes'" in caps, caps
    assert "type='bd'" not in caps                     # no bd backend in this daemon
    info = virsh("pool-info", POOL).stdout
    assert re.search(r"State:\s+running", info), info
    # the pool's capacity is the thin pool's (bdfs statfs), not the guest's tmpfs
    cap = float(re.search(r"Capacity:\s+([\d.]+) GiB", info).group(1))
    assert 0.9 <= cap <= 1.1, info


def test_vol_create_as_makes_a_thin_lv(env):
    bd, m, virsh = env
    name = vol("thin")
    virsh("vol-create-as", POOL, name, "64M", "--format", "raw", "--allocation", "0")
    info = bd_info(bd, name)
    assert info["size"] == 64 * MiB and info["type"] == "thin", info
    assert info["allocated"] == 0, info
    assert lv_attr(bd, name, "segtype") == "thin"
    assert lv_attr(bd, name, "pool_lv") == "pool"
    v = vol_info(virsh, POOL, name)
    assert v["Capacity"] == f"{64 * MiB} bytes" and v["Allocation"] == "0 bytes", v
    # the same volume through bdctl and through the mount
    assert os.stat(m.p(name)).st_size == 64 * MiB
    # Without --allocation libvirt preallocates it all: bdfs cannot reserve thin
    # space (fallocate is EOPNOTSUPP), so glibc writes it, and it is allocated.
    full = vol("prealloc")
    virsh("vol-create-as", POOL, full, "16M", "--format", "raw")
    assert bd_info(bd, full)["allocated"] == 16 * MiB


def test_vol_create_as_qcow2_grows_as_written(env):
    bd, m, virsh = env
    name = vol("q").replace(".img", ".qcow2")
    virsh("vol-create-as", POOL, name, "1G", "--format", "qcow2")
    assert bd_info(bd, name)["size"] < 64 * MiB          # the LV holds the qcow2 metadata only
    assert "virtual size: 1 GiB" in sh("qemu-img", "info", m.p(name)).stdout
    sh("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 512M 16M", m.p(name))
    assert bd_info(bd, name)["size"] > 16 * MiB           # a write past EOF grew the LV
    out = sh("qemu-io", "-f", "qcow2", "-c", "read -P 0x5a 512M 16M", m.p(name)).stdout
    assert "read 16777216/16777216" in out, out
    assert "<format type='qcow2'/>" in virsh("vol-dumpxml", name, "--pool", POOL).stdout
    sh("qemu-img", "check", m.p(name))


def test_vol_upload_and_download(env, tmp_path):
    bd, m, virsh = env
    name = vol("up")
    virsh("vol-create-as", POOL, name, "32M", "--allocation", "0")
    data = os.urandom(8 * MiB)
    (tmp_path / "in").write_bytes(data)
    virsh("vol-upload", name, tmp_path / "in", "--pool", POOL, "--offset", str(4 * MiB))
    with open(bd.device("/" + name), "rb") as f:             # landed on the LV itself
        f.seek(4 * MiB)
        assert f.read(8 * MiB) == data
    virsh("vol-download", name, tmp_path / "out", "--pool", POOL,
          "--offset", str(4 * MiB), "--length", str(8 * MiB))
    assert (tmp_path / "out").read_bytes() == data
    assert bd_info(bd, name)["allocated"] >= 8 * MiB


def test_vol_clone_is_a_sparse_data_copy(env, tmp_path):
    """Differs from the native pool: libvirt's dir backend reads and writes the
    data itself (skipping zeros), and its --reflink needs FICLONE, which FUSE
    does not pass on. The copy is a new, independent thin LV."""
    bd, m, virsh = env
    src, dst = vol("src"), vol("dst")
    virsh("vol-create-as", POOL, src, "64M", "--allocation", "0")
    data = os.urandom(4 * MiB)
    (tmp_path / "in").write_bytes(data)
    virsh("vol-upload", src, tmp_path / "in", "--pool", POOL, "--offset", str(32 * MiB))
    virsh("vol-clone", src, dst, "--pool", POOL)
    a, b = bd_info(bd, src), bd_info(bd, dst)
    assert b["size"] == a["size"] and b["lv"] != a["lv"] and b["type"] == "thin", b
    assert lv_attr(bd, dst, "origin") == ""               # a copy, not a snapshot
    assert b["allocated"] <= a["allocated"] + MiB, (a, b)  # holes stayed holes
    with open(m.p(dst), "rb") as f:
        f.seek(32 * MiB)
        assert f.read(4 * MiB) == data
        f.seek(0)
        assert f.read(MiB) == bytes(MiB)
    r = virsh("vol-clone", src, vol("ref"), "--pool", POOL, "--reflink", rc=1)
    assert "Operation not supported" in r.stderr, r.stderr


def test_vol_resize_grows_and_shrink_is_refused(env):
    bd, m, virsh = env
    name = vol("rs")
    virsh("vol-create-as", POOL, name, "32M", "--allocation", "0")
    virsh("vol-resize", name, "96M", "--pool", POOL)
    assert bd_info(bd, name)["size"] == 96 * MiB
    assert lv_attr(bd, name, "lv_size").startswith("96.00m")
    # a shrink loses data: bdfs refuses it unless mounted -o allow_shrink
    r = virsh("vol-resize", name, "32M", "--pool", POOL, "--shrink", rc=1)
    assert "Invalid argument" in r.stderr, r.stderr
    assert bd_info(bd, name)["size"] == 96 * MiB
    assert f'refusing to shrink "{name}"' in m.logtext(), m.logtext()[-2000:]


def test_vol_wipe_discards(env):
    bd, m, virsh = env
    name = vol("wipe")
    virsh("vol-create-as", POOL, name, "32M", "--allocation", "0")
    with open(m.p(name), "r+b") as f:
        f.write(os.urandom(16 * MiB))
    assert bd_info(bd, name)["allocated"] >= 16 * MiB
    virsh("vol-wipe", name, "--pool", POOL)
    info = bd_info(bd, name)
    assert info["size"] == 32 * MiB and info["allocated"] == 0, info
    with open(bd.device("/" + name), "rb") as f:
        assert f.read(16 * MiB) == bytes(16 * MiB)


def test_vol_delete_removes_the_lv(env):
    bd, m, virsh = env
    name = vol("del")
    virsh("vol-create-as", POOL, name, "16M", "--allocation", "0")
    lv = bd_info(bd, name)["lv"]
    virsh("vol-delete", name, "--pool", POOL)
    assert lv not in bd.lvs()
    bd_info(bd, name, rc=3)
    assert name not in virsh("vol-list", POOL).stdout


def test_changes_made_outside_libvirt_show_after_refresh(env):
    """bdctl, `ln` and `ln -s` in the mount; a dir pool sees them at pool-refresh."""
    bd, m, virsh = env
    base, made, clone, snap = vol("base"), vol("bdctl"), vol("ln"), vol("snap")
    virsh("vol-create-as", POOL, base, "16M", "--allocation", "0")
    bd.create("/" + made, "16M")
    m.run(f"ln {base} {clone} && ln -s {base} {snap}")
    assert lv_attr(bd, clone, "origin") == bd_info(bd, base)["lv"]    # instant clone
    virsh("pool-refresh", POOL)
    listed = virsh("vol-list", POOL).stdout
    for n in (base, made, clone, snap):
        assert n in listed, listed
    def snapshots():
        return [s["name"] for s in bd.json("snapshots", bd.spec("/" + base))["snapshots"]]
    assert snapshots() == [snap]
    # deleting the snapshot link through libvirt deletes the snapshot
    virsh("vol-delete", snap, "--pool", POOL)
    assert snapshots() == []


def test_domain_boots_from_a_bdfs_volume(env, stock_daemon, tmp_path):
    """Debian's libvirtd and QEMU boot a domain whose disk is a file in the dir
    pool: QEMU opens it through bdfs (the native pool hands it /dev/VG/LV)."""
    bd, m, virsh = env
    qemu = virsh.on("qemu:///system")
    images = "/var/lib/libvirt/images/bdfs-e2e"
    os.makedirs(images, exist_ok=True)
    kernel, initrd, _ = build_nested_initramfs(images)
    domain, name, size = "bdfse2e", vol("vm"), 8 * MiB
    serial = f"/var/log/libvirt/qemu/{domain}-serial.log"
    data = os.urandom(size)
    (tmp_path / "disk.raw").write_bytes(data)
    virsh("vol-create-as", POOL, name, str(size), "--allocation", "0")
    virsh("vol-upload", name, tmp_path / "disk.raw", "--pool", POOL)
    xml = tmp_path / "domain.xml"
    xml.write_text(domain_xml(domain, kernel, initrd, serial, POOL, name))
    qemu("define", xml)
    try:
        qemu("start", domain, "--paused", timeout=900)
        with open(f"/run/libvirt/qemu/{domain}.pid") as f:
            pid = int(f.read())
        # QEMU runs in libvirt's own mount namespace, so compare files, not paths
        assert os.readlink(f"/proc/{pid}/exe").endswith(QEMU)
        want = os.stat(m.p(name))
        held = fds_on(pid, lambda st: (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino))
        assert held, f"QEMU {pid} does not hold {m.p(name)} (through bdfs) open"
        running_uid = os.stat(m.p(name)).st_uid           # chowned for QEMU's user
        run_nested_guest(qemu, domain, serial, size, hashlib.sha256(data).hexdigest())
    finally:
        qemu("destroy", domain, rc=None)
        qemu("undefine", domain, rc=None)
    # libvirt's DAC driver gave the disk to QEMU's user and, remembering the
    # owner in trusted.* xattrs on bdfs, gave it back
    assert running_uid != 0
    assert os.stat(m.p(name)).st_uid == 0
    assert not [x for x in os.listxattr(m.p(name)) if x.startswith("trusted.libvirt")]
    virsh("vol-delete", name, "--pool", POOL)

