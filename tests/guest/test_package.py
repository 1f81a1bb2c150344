"""The Debian package: installed, used and removed in the guest.

tests/run builds the package with scripts/build-deb and names it in BD_DEB.
The test installs it with dpkg, runs the demo's core steps with the installed
/usr/sbin/bdctl and /usr/sbin/bdfs (bdfs through an fstab line and mount(8)),
completes a real export's paths with the installed bash completion, removes
the package, and checks that Debian's libvirtd works exactly as before. The
package's files are compared with what `meson install` installs from the
build tree, so the two cannot drift apart.
"""
import hashlib
import os
import re
import sys
import uuid

import pytest

from conftest import BUILD, destroy, sh

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "libvirt"))
from bdlibvirt import Daemon  # noqa: E402

# Installs into /usr and edits /etc/fstab; runs Debian's libvirtd on its socket.
pytestmark = pytest.mark.serial

SBIN_BDCTL, SBIN_BDFS = "/usr/sbin/bdctl", "/usr/sbin/bdfs"
PACKAGE_FILES = {
    SBIN_BDCTL, SBIN_BDFS, "/usr/sbin/mount.fuse.bdfs",
    "/usr/share/man/man8/bdctl.8.gz", "/usr/share/man/man1/bdfs.1.gz",
    "/usr/lib/systemd/system/bdfs@.service",
    "/usr/share/bash-completion/completions/bdctl",
}
MOUNT = "/srv/bd-package"


def deb_path():
    deb = os.environ.get("BD_DEB", "")
    if not deb or not os.path.isfile(deb):
        raise AssertionError(f"BD_DEB={deb!r} names no package: tests/run builds it with "
                             "scripts/build-deb and passes its path")
    return deb


def installed_files():
    """Every regular file and link the package holds, as dpkg lists them."""
    out = sh("dpkg", "-L", "bd").stdout.split()
    return {p for p in out if os.path.isfile(p) or os.path.islink(p)}


def meson_install_files(tmp_path):
    """What `meson install` puts down from the build tree, mapped to /usr."""
    dest = tmp_path / "stage"
    sh("meson", "install", "-C", BUILD, "--no-rebuild", "--quiet", "--destdir", dest)
    prefix = sh("meson", "introspect", "--buildoptions", BUILD).stdout
    prefix = re.search(r'"name": "prefix", "value": "([^"]+)"', prefix).group(1)
    found = set()
    for d, _, files in os.walk(dest):
        for f in files:
            p = "/" + os.path.relpath(os.path.join(d, f), dest)
            if p.startswith(prefix + "/"):
                p = "/usr" + p[len(prefix):]
            found.add(p)
    return found


def stock_libvirt_check(tmp_path, tag):
    """Debian's libvirtd: a dir pool, a volume in it, and what virsh says of them."""
    d = Daemon("/usr", link_bdctl=False)
    d.start()
    try:
        pool, target = f"pkg{tag}", str(tmp_path / f"pool-{tag}")
        os.makedirs(target)
        v = d.virsh
        v("pool-define-as", pool, "dir", "--target", target)
        v("pool-start", pool)
        v("vol-create-as", pool, "v.img", "8M")
        seen = {
            "backends": sorted(re.findall(r"<pool type='(\w+)' supported='yes'",
                                          v("pool-capabilities").stdout)),
            "vols": v("vol-list", pool).stdout.replace(target, "TARGET").split(),
            "capacity": re.search(r"<capacity unit='bytes'>(\d+)<",
                                  v("vol-dumpxml", "v.img", "--pool", pool).stdout).group(1),
        }
        v("vol-delete", "v.img", "--pool", pool)
        v("pool-destroy", pool)
        v("pool-undefine", pool)
        return seen
    finally:
        d.stop()


def complete(words):
    """What the installed bash completion offers for the command line `words`
    (the last word is the one being completed)."""
    line = " ".join(words)
    script = f"""
        source /usr/share/bash-completion/bash_completion
        source /usr/share/bash-completion/completions/bdctl
        COMP_WORDS=({' '.join(f"'{w}'" for w in words)})
        COMP_CWORD={len(words) - 1}
        COMP_LINE='{line}'
        COMP_POINT={len(line)}
        _bdctl bdctl '{words[-1]}' '{words[-2]}'
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """
    r = sh("bash", "-c", script)
    return sorted(x for x in r.stdout.split("\n") if x)


def test_the_package_installs_works_and_uninstalls_leaving_libvirt_as_it_was(tmp_path):
    deb = deb_path()
    for p in PACKAGE_FILES:
        assert not os.path.lexists(p), f"{p} is there before the package is installed"
    assert sh("dpkg-query", "-W", "bd", check=False).returncode != 0
    libvirt_before = stock_libvirt_check(tmp_path, "a")
    assert "dir" in libvirt_before["backends"]

    # Install: the files, and the same set as `meson install`.
    # man-db's trigger re-indexes every man page on the host: minutes under TCG.
    if os.path.exists("/var/lib/man-db/auto-update"):
        os.unlink("/var/lib/man-db/auto-update")
    sh("dpkg", "-i", deb)
    files = installed_files()
    assert PACKAGE_FILES <= files, PACKAGE_FILES - files
    assert os.readlink("/usr/sbin/mount.fuse.bdfs") == "/sbin/mount.fuse3"
    meson = {p[:-3] if p.endswith(".gz") else p for p in files
             if not p.startswith("/usr/share/doc/bd/")}
    staged = meson_install_files(tmp_path)
    assert meson == staged, (meson - staged, staged - meson)
    assert sh(SBIN_BDCTL, "--help").stdout.startswith("bdctl")
    assert "receive" in sh("zcat", "/usr/share/man/man8/bdctl.8.gz").stdout
    # The unit as systemd reads it: ExecStart and its man page resolve.
    unit = tmp_path / "bdfs@pkg.service"
    unit.write_text(open("/usr/lib/systemd/system/bdfs@.service").read())
    r = sh("systemd-analyze", "verify", unit, check=False)
    assert r.returncode == 0, r.stderr
    assert "ExecStart=/usr/sbin/bdfs %i" in unit.read_text()

    # The demo's core steps, with the installed bdctl only.
    name, vg = "p" + uuid.uuid4().hex[:6], "vg_pkg_" + uuid.uuid4().hex[:6]
    img = tmp_path / "pv.img"
    sh("truncate", "-s", "1G", img)
    loop = sh("losetup", "--find", "--show", img).stdout.strip()

    def bdctl(*args):
        return sh(SBIN_BDCTL, *args).stdout

    class Export:  # enough of conftest.Bd for destroy()
        pass

    ex = Export()
    ex.vg, ex.loop, ex.img = vg, loop, str(img)
    try:
        bdctl("export", "create", name, "--vg", vg, "--pv", loop, "--size", "512M")
        bdctl("create", f"{name}:/vm/disk0.img", "64M")
        dev = f"/dev/disk/by-bd/{vg}/vm/disk0.img"
        with open(dev, "r+b") as f:
            f.write(b"installed bd" * 100)
            os.fsync(f.fileno())
        want = hashlib.sha256(open(dev, "rb").read(1 << 20)).hexdigest()
        bdctl("snapshot", f"{name}:/vm/disk0.img", "before")
        bdctl("clone", f"{name}:/vm/disk0.img", "/vm/disk1.img")
        with open(dev, "r+b") as f:
            f.write(b"X" * 4096)
            os.fsync(f.fileno())
        bdctl("rollback", f"{name}:/vm/disk0.img", "before")
        assert hashlib.sha256(open(dev, "rb").read(1 << 20)).hexdigest() == want
        clone = f"/dev/disk/by-bd/{vg}/vm/disk1.img"
        assert hashlib.sha256(open(clone, "rb").read(1 << 20)).hexdigest() == want

        # bash completion: verbs, this export, and its real paths.
        assert "receive" in complete(["bdctl", "re"])
        assert f"{name}:" in complete(["bdctl", "info", name[:3]])
        assert complete(["bdctl", "info", f"{name}:/vm/"]) == [
            "/vm/disk0.img", "/vm/disk0.img@before", "/vm/disk1.img"]
        assert complete(["bdctl", "rollback", f"{name}:/vm/disk0.img", ""]) == ["before"]

        # bdfs from fstab, through mount(8) and the installed helper.
        os.makedirs(MOUNT, exist_ok=True)
        with open("/etc/fstab", "a") as f:
            f.write(f"{name} {MOUNT} fuse.bdfs allow_other,nofail 0 0\n")
        sh("mount", MOUNT)
        try:
            fstype = sh("findmnt", "-n", "-o", "FSTYPE,SOURCE", MOUNT).stdout.split()
            assert fstype == ["fuse.bdfs", name], fstype
            assert sorted(os.listdir(f"{MOUNT}/vm")) == ["disk0.img", "disk0.img@before",
                                                      "disk1.img"]
            sh("truncate", "-s", "32M", f"{MOUNT}/made-by-truncate.img")
            assert bdctl("--json", "info", f"{name}:/made-by-truncate.img")
            # mount.fuse3 ran bdfs by name, from PATH: the installed one.
            pid = sh("pgrep", "-f", f"^bdfs {name} {MOUNT} ").stdout.split()
            assert len(pid) == 1, pid
            assert os.readlink(f"/proc/{pid[0]}/exe") == SBIN_BDFS
        finally:
            sh("umount", MOUNT)

        # Remove (and purge): the files go, the export and its data stay.
        sh("dpkg", "--purge", "bd")
        for p in PACKAGE_FILES:
            assert not os.path.lexists(p), f"{p} is still there after dpkg --purge bd"
        assert sh("dpkg-query", "-W", "bd", check=False).returncode != 0
        lvs = sh("lvs", "--noheadings", "-o", "lv_name", vg).stdout.split()
        assert len(lvs) == 5, lvs      # pool, two volumes, a snapshot, the file
        assert hashlib.sha256(open(clone, "rb").read(1 << 20)).hexdigest() == want
    finally:
        if sh("dpkg-query", "-W", "bd", check=False).returncode == 0:
            sh("dpkg", "--purge", "bd", check=False)
        sh("umount", MOUNT, check=False)
        destroy(ex)

    # Debian's libvirt after the package came and went: the same answers, and
    # not one of its files changed.
    assert stock_libvirt_check(tmp_path, "b") == libvirt_before
    libvirt_pkgs = sh("dpkg-query", "-W", "-f", "${Package}\n", "libvirt*").stdout.split()
    r = sh("dpkg", "--verify", *[p for p in libvirt_pkgs
                                 if sh("dpkg-query", "-W", "-f", "${Status}", p,
                                       check=False).stdout.endswith(" installed")],
           check=False)
    changed = [ln for ln in r.stdout.splitlines() if " c " not in ln]  # conffiles may differ
    assert not changed, changed
