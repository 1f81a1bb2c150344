"""The tools people use on a bd pool: Debian's virt-install and virt-clone, and
virtinst driven as virt-manager's "New VM" and "Clone" wizards drive it.

virtinst names a new disk <pool target>/<volume name> and writes that path into
the domain before the volume exists. The bd pool's target is bd's volume tree,
/dev/disk/by-bd/VG, where that name links to the volume's LV. These tests run
the real tools against the patched libvirtd and check what they made: the
domain's disk is the thin LV (QEMU holds its dm device), a clone is a thin
snapshot sharing the data, and removing the domain's storage removes the
volume through the pool.
"""
import os
import stat
import time
import uuid
import xml.etree.ElementTree as ET

import pytest

from bdlibvirt import BDCTL, bdctl_json, fds_on, lv_field, sh, vol_path

VIRT_INSTALL = "/usr/bin/virt-install"
VIRT_CLONE = "/usr/bin/virt-clone"
URI = "qemu:///system"


@pytest.fixture(scope="module", autouse=True)
def tools():
    for need in (VIRT_INSTALL, VIRT_CLONE):
        if not os.access(need, os.X_OK):
            raise AssertionError(f"{need} is missing: scripts/setup installs virtinst")


def tree(vg):
    return f"/dev/disk/by-bd/{vg}"


def virt(tool, *args, rc=0, timeout=900):
    r = sh(tool, "--connect", URI, *args, check=False, timeout=timeout)
    if rc is not None and r.returncode != rc:
        raise AssertionError(f"{os.path.basename(tool)} {' '.join(map(str, args))}: exit "
                             f"{r.returncode}, wanted {rc}\n{r.stdout}\n{r.stderr}")
    return r


def install(name, disk):
    """virt-install --import, as a user types it: no kernel, so SeaBIOS finds
    nothing to boot, but QEMU runs and holds the disk."""
    return virt(VIRT_INSTALL, "--name", name, "--memory", "64", "--vcpus", "1", "--import",
                "--disk", disk, "--osinfo", "generic", "--virt-type", "qemu",
                "--graphics", "none", "--network", "none", "--noautoconsole")


def qemu_pid(domain):
    with open(f"/run/libvirt/qemu/{domain}.pid") as f:
        return int(f.read())


def domain_disk(qemu, domain, live=True):
    """(type, source path) of the domain's first disk."""
    args = ["dumpxml", domain] + ([] if live else ["--inactive"])
    xml = qemu(*args).stdout
    disk = ET.fromstring(xml).find("./devices/disk")
    src = disk.find("source")
    return disk.get("type"), src.get("file") or src.get("dev")


def assert_runs_on(qemu, domain, device):
    """The domain runs, and its QEMU holds the LV's dm device open."""
    assert qemu("domstate", domain).stdout.strip() == "running"
    dm = os.stat(device).st_rdev
    pid = qemu_pid(domain)
    held = fds_on(pid, lambda st: stat.S_ISBLK(st.st_mode) and st.st_rdev == dm)
    assert held, f"QEMU {pid} of {domain} holds no fd on {device}"


def pool_allocated(vg):
    for e in bdctl_json("export", "list")["exports"]:
        if e["vg"] == vg:
            return e["allocated"]
    raise AssertionError(f"no export on {vg}")


def remove_domain(qemu, domain):
    qemu("destroy", domain, rc=None)
    qemu("undefine", domain, "--remove-all-storage", rc=None)


def test_the_pool_target_is_the_volume_tree(daemon, pool, patched):
    pname, vg = pool
    xml = patched("pool-dumpxml", pname).stdout
    assert f"<path>{tree(vg)}</path>" in xml, xml
    name = f"t{uuid.uuid4().hex[:6]}/disk.img"
    patched("vol-create-as", pname, name, "16M")
    link = f"{tree(vg)}/{name}"
    assert vol_path(patched, pname, name) == link      # a volume's path is its link...
    dev = bdctl_json("info", f"{pname}:/{name}")["device"]
    assert os.readlink(link) == dev                    # ...which names its LV
    assert stat.S_ISBLK(os.stat(link).st_mode)
    # libvirt finds the volume by either (virsh undefine --remove-all-storage does)
    assert patched("vol-name", link).stdout.strip() == name
    assert patched("vol-name", dev).stdout.strip() == name
    # bdctl changes the same volume: the link follows
    moved = name.replace("disk.img", "moved.img")
    sh(BDCTL, "rename", f"{pname}:/{name}", f"{pname}:/{moved}")
    assert not os.path.lexists(link)
    assert os.path.realpath(f"{tree(vg)}/{moved}") == os.path.realpath(
        bdctl_json("info", f"{pname}:/{moved}")["device"])
    # An LV made with lvcreate, and a link lost (a kill between a commit and
    # its link): the pool's refresh (a bdctl listing) puts both right.
    sh("lvcreate", "-q", "-T", f"{vg}/pool", "-V", "8M", "-n", "handmade")
    os.unlink(f"{tree(vg)}/{moved}")
    patched("pool-refresh", pname)
    assert os.readlink(f"{tree(vg)}/handmade") == f"/dev/{vg}/handmade"
    assert patched("vol-name", f"/dev/{vg}/handmade").stdout.strip() == "handmade"
    assert os.path.realpath(f"{tree(vg)}/{moved}") == os.path.realpath(
        bdctl_json("info", f"{pname}:/{moved}")["device"])
    patched("vol-delete", "handmade", "--pool", pname)
    # A libvirtd restart leaves the tree alone; a reboot empties /dev, and the
    # pool's start (bdctl activate) makes the tree again.
    daemon.restart()
    assert patched("vol-name", f"{tree(vg)}/{moved}").stdout.strip() == moved
    patched("pool-destroy", pname)
    sh("rm", "-rf", tree(vg))
    patched("pool-start", pname)
    assert os.readlink(f"{tree(vg)}/{moved}") == bdctl_json("info", f"{pname}:/{moved}")["device"]
    patched("vol-delete", moved, "--pool", pname)
    assert not os.path.lexists(f"{tree(vg)}/{moved}")
    assert not os.path.exists(os.path.dirname(f"{tree(vg)}/{moved}"))  # no empty directory


def test_virt_install_and_virt_clone(pool, patched):
    pname, vg = pool
    qemu = patched.on(URI)
    name = f"vi{uuid.uuid4().hex[:4]}"
    try:
        install(name, f"pool={pname},size=0.25")
        kind, path = domain_disk(qemu, name, live=False)
        vol = os.path.basename(path)
        assert path == f"{tree(vg)}/{vol}", path            # virtinst's <target>/<name>
        dev = vol_path(patched, pname, vol)
        assert os.path.realpath(path) == os.path.realpath(dev)
        assert lv_field(dev, "segtype") == "thin"
        assert domain_disk(qemu, name)[0] == "block"         # QEMU opened it as a block device
        assert_runs_on(qemu, name, dev)
        qemu("destroy", name)

        # a clone of the (nearly empty) disk, then 200 MiB written, then another
        t0 = time.monotonic()
        virt(VIRT_CLONE, "--original", name, "--name", f"{name}-c0", "--auto-clone")
        small = time.monotonic() - t0
        fmt = "qcow2" if "<format type='qcow2'/>" in patched("vol-dumpxml", vol, "--pool",
                                                           pname).stdout else "raw"
        sh("qemu-io", "-f", fmt, "-c", "write -P 0x5a 0 200M", path, timeout=900)
        before = pool_allocated(vg)
        t0 = time.monotonic()
        virt(VIRT_CLONE, "--original", name, "--name", f"{name}-c1", "--auto-clone")
        big = time.monotonic() - t0
        grew = pool_allocated(vg) - before
        print(f"virt-clone: {small:.1f} s with the disk empty, {big:.1f} s with 200 MiB "
              f"written; the pool grew by {grew} bytes")
        _, cpath = domain_disk(qemu, f"{name}-c1", live=False)
        cvol = os.path.basename(cpath)
        assert cpath == f"{tree(vg)}/{cvol}" and cvol != vol, cpath
        cdev = vol_path(patched, pname, cvol)
        assert lv_field(cdev, "origin") == os.path.basename(os.readlink(dev))  # thin snapshot
        assert grew < 16 << 20, grew                                 # no data was copied
        assert big < 2 * small + 10, (small, big)                    # time flat in the data
        assert sh("cmp", dev, cdev).returncode == 0
        qemu("start", f"{name}-c1", timeout=900)
        assert_runs_on(qemu, f"{name}-c1", cdev)

        # the clone's storage goes through the pool; the original stays
        remove_domain(qemu, f"{name}-c1")
        assert cvol not in patched("vol-list", pname).stdout
        assert not os.path.lexists(cpath) and not os.path.exists(cdev)
        assert vol in patched("vol-list", pname).stdout
        assert os.path.realpath(path) == os.path.realpath(dev)
    finally:
        for d in (f"{name}-c0", f"{name}-c1", name):
            remove_domain(qemu, d)
    assert vol not in patched("vol-list", pname).stdout


def test_virt_install_and_virt_clone_with_a_directory_in_the_name(pool, patched):
    """A volume in a directory (vm/disk0.img) is a disk for virt-install by its
    link, and virt-clone clones it. virtinst places a new disk only in a pool
    whose target is the new path's parent directory, so --auto-clone, which
    puts the clone beside the original, is refused by virtinst itself, and
    leaves nothing behind; the clone goes to the top of the export instead."""
    pname, vg = pool
    qemu = patched.on(URI)
    name = f"vd{uuid.uuid4().hex[:4]}"
    vol = f"{name}/disk0.img"
    patched("vol-create-as", pname, vol, "64M", "--format", "raw")
    link = f"{tree(vg)}/{vol}"
    dev = vol_path(patched, pname, vol)
    assert dev == link
    sh("qemu-io", "-f", "raw", "-c", "write -P 0x6b 0 32M", link)
    try:
        install(name, f"path={link}")
        assert domain_disk(qemu, name, live=False)[1] == link
        assert domain_disk(qemu, name)[0] == "block"
        assert_runs_on(qemu, name, link)
        qemu("destroy", name)

        listed = patched("vol-list", pname).stdout
        r = virt(VIRT_CLONE, "--original", name, "--name", f"{name}-a", "--auto-clone", rc=1)
        assert "Don't know how to create storage" in r.stdout + r.stderr, r.stdout + r.stderr
        assert patched("vol-list", pname).stdout == listed
        assert sorted(os.listdir(os.path.dirname(link))) == ["disk0.img"]

        clone = f"{tree(vg)}/{name}-clone.img"
        virt(VIRT_CLONE, "--original", name, "--name", f"{name}-c", "--file", clone)
        assert domain_disk(qemu, f"{name}-c", live=False)[1] == clone
        assert lv_field(clone, "origin") == os.path.basename(os.readlink(link))
        assert sh("cmp", link, clone).returncode == 0
        qemu("start", f"{name}-c", timeout=900)
        assert_runs_on(qemu, f"{name}-c", clone)
        remove_domain(qemu, f"{name}-c")
        assert not os.path.lexists(clone)
        assert f"{name}-clone.img" not in patched("vol-list", pname).stdout
    finally:
        for d in (f"{name}-a", f"{name}-c", name):
            remove_domain(qemu, d)
    # --remove-all-storage found the volume in its directory by its link
    assert vol not in patched("vol-list", pname).stdout
    assert not os.path.lexists(link) and not os.path.exists(os.path.dirname(link))
