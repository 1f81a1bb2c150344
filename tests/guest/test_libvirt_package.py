"""The release step's libvirt packages: installed, used and removed in the guest.

`pool-backend/libvirt/build-libvirt --debs DIR` rebuilds Debian's libvirt
source package with the bd series in debian/patches and one more binary
package, libvirt-daemon-driver-storage-bd, and downloads Debian's own builds
of the installed libvirt packages into DIR/debian/ for the way back.
`tests/run --release DIR` runs this test in the guest of DIR's Debian
release, with BD_LIBVIRT_DEBS=DIR and the bd package in BD_DEB. It is not
part of the CI run: building every libvirt package takes about 15 minutes
here (docs/PACKAGING.md).

Debian's libvirtd (/usr/sbin) is used throughout, as an administrator would.
"""
import glob
import hashlib
import os
import re
import sys
import uuid

import pytest

from conftest import sh
from test_package import deb_path, libvirt_verify, stock_libvirt_check

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "libvirt"))
from bdlibvirt import Daemon, LoopPV, pool_xml  # noqa: E402

# Replaces Debian's libvirt in /usr, and runs libvirtd on its fixed socket.
pytestmark = pytest.mark.serial

DRIVER = "libvirt-daemon-driver-storage-bd"


def debs_dir():
    d = os.environ.get("BD_LIBVIRT_DEBS", "")
    if not d or not glob.glob(os.path.join(d, f"{DRIVER}_*.deb")):
        raise AssertionError(f"BD_LIBVIRT_DEBS={d!r} holds no {DRIVER} package: run "
                             "pool-backend/libvirt/build-libvirt --debs DIR, then "
                             "tests/run --release DIR")
    return d


def packages(pattern_dir):
    """{package: path} of the .debs in a directory."""
    return {sh("dpkg-deb", "-f", p, "Package").stdout.strip(): p
            for p in glob.glob(os.path.join(pattern_dir, "*.deb"))}


def libvirt_versions():
    """{package: version} of every installed libvirt package."""
    out = sh("dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Status}\n",
             "libvirt*", "libnss-libvirt", check=False).stdout  # 1: a pattern matched nothing
    rows = (ln.split(" ") for ln in out.splitlines())
    return {p: v for p, v, st in rows if st == "installed"}


def first_mib(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read(1 << 20)).hexdigest()


def test_rebuilt_libvirt_serves_a_bd_pool_and_debians_comes_back(tmp_path):
    debs, bd_deb = debs_dir(), deb_path()
    rebuilt, originals = packages(debs), packages(os.path.join(debs, "debian"))
    before = libvirt_versions()
    assert before and DRIVER not in before, before
    stock_before = stock_libvirt_check(tmp_path, "a")
    assert "bd" not in stock_before["backends"], stock_before
    verify_before = libvirt_verify()
    # Every installed libvirt package is replaced by its rebuilt twin.
    replace = sorted(p for p in before if p in rebuilt)
    assert replace == sorted(before), set(before) - set(replace)
    missing = [p for p in replace if p not in originals]
    assert not missing, f"Debian's own build of {missing} is not in {debs}/debian"

    man_auto = "/var/lib/man-db/auto-update"  # man-db's trigger: minutes under TCG
    had_man_auto = os.path.exists(man_auto)
    if had_man_auto:
        os.rename(man_auto, man_auto + ".bd-test")
    vg = "vg_lvpkg_" + uuid.uuid4().hex[:6]
    pv = LoopPV(str(tmp_path), "1G")
    daemon = Daemon("/usr", link_bdctl=False)
    try:
        # Install: bd, the rebuilt libvirt, and the new driver, with dpkg.
        sh("dpkg", "-i", bd_deb, *(rebuilt[p] for p in replace), rebuilt[DRIVER])
        now = libvirt_versions()
        assert all(now[p].endswith("+bd1") for p in replace + [DRIVER]), now

        # Debian's daemon path, now the patched build: a bd pool end to end.
        daemon.start()
        v = daemon.virsh
        caps = v("pool-capabilities").stdout
        assert re.search(r"<pool type='bd' supported='yes'", caps), caps
        xml = tmp_path / "pool.xml"
        xml.write_text(pool_xml("bdpkg", vg, pv.dev))
        v("pool-define", xml)
        v("pool-build", "bdpkg")
        v("pool-start", "bdpkg")
        assert "bdpkg" in v("pool-list", "--type", "bd").stdout.split()
        v("vol-create-as", "bdpkg", "vm/disk0.img", "64M")
        path = v("vol-path", "vm/disk0.img", "--pool", "bdpkg").stdout.strip()
        with open(path, "r+b") as f:
            f.write(b"rebuilt libvirt" * 1000)
            os.fsync(f.fileno())
        v("vol-clone", "vm/disk0.img", "vm/disk1.img", "--pool", "bdpkg")
        clone = v("vol-path", "vm/disk1.img", "--pool", "bdpkg").stdout.strip()
        assert first_mib(clone) == first_mib(path)
        # The clone is a thin snapshot of the volume's LV, not a copy.
        lv = os.path.basename(os.readlink(clone))
        origin = sh("lvs", "--noheadings", "-o", "origin,segtype", f"{vg}/{lv}").stdout.split()
        assert origin == [os.path.basename(os.readlink(path)), "thin"], origin
        # Remove the driver, bd pools stopped first as the README says (a pool
        # still active then can neither be stopped nor undefined until the
        # driver is back): they no longer start, with libvirt's own error; the
        # volumes stay in LVM and every other pool works.
        v("pool-destroy", "bdpkg")
        daemon.stop()
        sh("dpkg", "-r", DRIVER)
        daemon.start()
        assert not re.search(r"<pool type='bd' supported='yes'",
                             v("pool-capabilities").stdout)
        r = v("pool-start", "bdpkg", rc=None)
        assert r.returncode != 0 and "missing backend for pool type" in r.stderr, r.stderr
        v("pool-undefine", "bdpkg")
        daemon.stop()
        assert first_mib(f"/dev/{vg}/{os.path.basename(os.readlink(clone))}") == first_mib(
            f"/dev/{vg}/{os.path.basename(os.readlink(path))}")

        # And back to Debian's own libvirt: the same versions, the same files,
        # the same answers as before any of this.
        sh("dpkg", "-i", *(originals[p] for p in replace))
        sh("dpkg", "--purge", "bd")
        assert libvirt_versions() == before
        assert libvirt_verify() == verify_before
        assert stock_libvirt_check(tmp_path, "b") == stock_before
    finally:
        if daemon.pid is not None:
            daemon.stop()
        if had_man_auto:
            os.rename(man_auto + ".bd-test", man_auto)
        pv.remove(vg)
