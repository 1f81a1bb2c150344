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
import json
import os
import re
import shlex
import shutil
import subprocess
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
    "/usr/share/man/man8/bdctl.8.gz", "/usr/share/man/man8/bdfs.8.gz",
    "/usr/share/man/man8/mount.fuse.bdfs.8.gz",
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
    options = json.loads(sh("meson", "introspect", "--buildoptions", BUILD).stdout)
    prefix = next(o["value"] for o in options if o["name"] == "prefix")
    found = set()
    for d, _, files in os.walk(dest):
        for f in files:
            p = "/" + os.path.relpath(os.path.join(d, f), dest)
            if p.startswith(prefix + "/"):
                p = "/usr" + p[len(prefix):]
            found.add(p)
    return found


def libvirt_verify():
    """dpkg --verify of every installed libvirt package: what differs from them."""
    pkgs = [ln.split()[0] for ln in sh("dpkg-query", "-W", "-f", "${Package} ${Status}\n",
                                       "libvirt*").stdout.splitlines()
            if ln.endswith(" installed")]
    assert pkgs, "no libvirt package is installed"
    return sh("dpkg", "--verify", *pkgs, check=False).stdout.splitlines()


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


def complete(words, cwd):
    """What the installed bash completion offers for the command line `words`
    (the last is the word being completed), each as the shell would read it.
    The words are split at ':' as bash splits them (COMP_WORDBREAKS)."""
    script = r"""
        source /usr/share/bash-completion/bash_completion
        source /usr/share/bash-completion/completions/bdctl
        COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMP_WORDS=()
        for x in "$@"; do
            if [[ $x == *:* ]]; then COMP_WORDS+=("${x%%:*}" ":" "${x#*:}")
            else COMP_WORDS+=("$x"); fi
        done
        COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
        _bdctl bdctl "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
        printf '%s\n' "${COMPREPLY[@]}"
    """
    r = subprocess.run(["bash", "-c", script, "bash", *words], capture_output=True, text=True,
                       cwd=cwd, check=True)
    offers = [x for x in r.stdout.split("\n") if x]
    read = [shlex.split(o) for o in offers]
    assert all(len(w) == 1 for w in read), offers   # one word each, quoted for the shell
    return sorted(w[0] for w in read)


def test_the_package_installs_works_and_uninstalls_leaving_libvirt_as_it_was(tmp_path):
    deb = deb_path()
    for p in PACKAGE_FILES:
        assert not os.path.lexists(p), f"{p} is there before the package is installed"
    # mount.fuse3 finds bdfs by name: no other may be on PATH.
    assert shutil.which("bdfs") is None, shutil.which("bdfs")
    assert sh("dpkg-query", "-W", "bd", check=False).returncode != 0
    libvirt_before = stock_libvirt_check(tmp_path, "a")
    assert "dir" in libvirt_before["backends"]
    verify_before = libvirt_verify()
    with open("/etc/fstab") as f:
        fstab = f.read()

    name, vg = "p" + uuid.uuid4().hex[:6], "vg_pkg_" + uuid.uuid4().hex[:6]
    img = tmp_path / "pv.img"
    sh("truncate", "-s", "1G", img)
    loop = sh("losetup", "--find", "--show", img).stdout.strip()

    class Export:  # enough of conftest.Bd for destroy()
        pass

    ex = Export()
    ex.vg, ex.loop, ex.img = vg, loop, str(img)
    # man-db's trigger re-indexes every man page on the host: minutes under TCG.
    man_auto = "/var/lib/man-db/auto-update"
    had_man_auto = os.path.exists(man_auto)
    if had_man_auto:
        os.rename(man_auto, man_auto + ".bd-test")
    fuse_alias, fuse_alias_aside = "/usr/sbin/mount.fuse", "/usr/sbin/mount.fuse.bd-test"
    try:
        # Install: the files, and the same set as `meson install`.
        sh("dpkg", "-i", deb)
        files = installed_files()
        assert PACKAGE_FILES <= files, PACKAGE_FILES - files
        assert os.path.realpath("/usr/sbin/mount.fuse.bdfs") == os.path.realpath(
            "/sbin/mount.fuse3")
        packaged = {p[:-3] if p.startswith("/usr/share/man/") and p.endswith(".gz") else p
                    for p in files if not p.startswith("/usr/share/doc/bd/")}
        staged = meson_install_files(tmp_path)
        assert packaged == staged, (packaged - staged, staged - packaged)
        assert sh(SBIN_BDCTL, "--help").stdout.startswith("bdctl")
        assert "receive" in sh("zcat", "/usr/share/man/man8/bdctl.8.gz").stdout
        # The documents bdctl(8) names, where it names them.
        for doc in ("CLI-CONTRACT.md", "STREAM.md", "ARCHITECTURE.md"):
            assert f"/usr/share/doc/bd/{doc}" in files, doc
        # The unit as systemd reads it: ExecStart and its man page resolve.
        unit = tmp_path / "bdfs@pkg.service"
        unit.write_text(open("/usr/lib/systemd/system/bdfs@.service").read())
        r = sh("systemd-analyze", "verify", unit, check=False)
        assert r.returncode == 0, r.stderr
        assert "ExecStart=/usr/sbin/bdfs %i" in unit.read_text()

        # The demo's core steps, with the installed bdctl only.
        def bdctl(*args):
            return sh(SBIN_BDCTL, *args).stdout

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

        # bash completion: verbs, this export, its real paths and snapshots. A
        # volume and a snapshot named as shell commands (any bdfs user or a
        # stream's sender picks names) are offered quoted and never run.
        hostile_vol, hostile_snap = "vm/$(touch pwned-by-a-path)", "`touch pwned-by-a-snapshot`"
        bdctl("create", f"{name}:/{hostile_vol}", "4M")
        bdctl("snapshot", f"{name}:/vm/disk0.img", hostile_snap)
        shell_dir = tmp_path / "completion-cwd"
        shell_dir.mkdir()
        assert "receive" in complete(["bdctl", "re"], shell_dir)
        assert f"{name}:" in complete(["bdctl", "info", name[:3]], shell_dir)
        assert complete(["bdctl", "info", f"{name}:/vm/"], shell_dir) == sorted([
            "/vm/disk0.img", "/vm/disk0.img@before", "/vm/disk1.img", "/" + hostile_vol,
            f"/vm/disk0.img@{hostile_snap}"])
        assert complete(["bdctl", "rollback", f"{name}:/vm/disk0.img", ""], shell_dir) == sorted(
            ["before", hostile_snap])
        assert complete(["bdctl", "create", "--format", "qcow2", f"{name}:/vm/disk1"],
                        shell_dir) == ["/vm/disk1.img"]
        assert os.listdir(shell_dir) == [], "the completion ran a command found in a name"

        # bdfs from fstab, through mount(8) and the package's helper: fuse3's
        # own mount.fuse alias is moved aside, so only mount.fuse.bdfs can work.
        os.makedirs(MOUNT, exist_ok=True)
        with open("/etc/fstab", "a") as f:
            f.write(f"{name} {MOUNT} fuse.bdfs allow_other,nofail 0 0\n")
        os.rename(fuse_alias, fuse_alias_aside)
        sh("mount", MOUNT)
        fstype = sh("findmnt", "-n", "-o", "FSTYPE,SOURCE", MOUNT).stdout.split()
        assert fstype == ["fuse.bdfs", name], fstype
        assert "disk1.img" in os.listdir(f"{MOUNT}/vm")
        sh("truncate", "-s", "32M", f"{MOUNT}/made-by-truncate.img")
        assert bdctl("--json", "info", f"{name}:/made-by-truncate.img")
        # mount.fuse3 ran bdfs by name, from PATH: the installed one.
        pid = sh("pgrep", "-f", f"^bdfs {name} {MOUNT} ").stdout.split()
        assert len(pid) == 1, pid
        assert os.readlink(f"/proc/{pid[0]}/exe") == SBIN_BDFS
        sh("umount", MOUNT)

        # Remove (and purge): the files go, the export and its data stay.
        sh("dpkg", "--purge", "bd")
        for p in PACKAGE_FILES:
            assert not os.path.lexists(p), f"{p} is still there after dpkg --purge bd"
        assert sh("dpkg-query", "-W", "bd", check=False).returncode != 0
        lvs = sh("lvs", "--noheadings", "-o", "lv_name", vg).stdout.split()
        assert len(lvs) == 7, lvs  # the pool, 3 volumes, 2 snapshots, the file
        assert hashlib.sha256(open(clone, "rb").read(1 << 20)).hexdigest() == want
    finally:
        if sh("findmnt", MOUNT, check=False).returncode == 0:
            sh("umount", "-l", MOUNT, check=False)
        sh("pkill", "-9", "-f", f"^bdfs {name} ", check=False)
        if os.path.lexists(fuse_alias_aside):
            os.rename(fuse_alias_aside, fuse_alias)
        with open("/etc/fstab", "w") as f:
            f.write(fstab)
        if os.path.isdir(MOUNT):
            os.rmdir(MOUNT)
        if sh("dpkg-query", "-W", "-f", "${Status}", "bd", check=False).stdout.endswith(
                " installed"):
            sh("dpkg", "--purge", "bd", check=False)
        if had_man_auto:
            os.rename(man_auto + ".bd-test", man_auto)
        destroy(ex)

    # Debian's libvirt after the package came and went: the same answers, and
    # the same files as before.
    assert stock_libvirt_check(tmp_path, "b") == libvirt_before
    assert libvirt_verify() == verify_before
