"""Fixtures for the libvirt `bd` pool tests: the patched libvirtd from the
build-libvirt cache, real bdctl and real LVM, inside the test guest.

Nothing here skips. Outside the guest (no device-mapper), without the patched
build, without QEMU, or when libvirtd does not answer, the run fails.
"""
import os
import shutil
import uuid

import pytest

from bdlibvirt import (BDCTL, QEMU, STOCK_VIRSH, Daemon, LOGFILE, LoopPV, Virsh, libvirt_prefix,
                       pool_xml)
from depth import FULL  # noqa: E402 (bdlibvirt puts tests/lib on sys.path)

POOL, VG = "bd", "vg_bd"


def pytest_sessionstart(session):
    if not os.path.exists("/dev/mapper/control"):
        raise pytest.UsageError(
            "no device-mapper here: run through tests/vm/run, e.g. tests/vm/run --mem 3072 "
            "--timeout 2400 -- /usr/bin/python3 -m pytest tests/libvirt")
    for need in (BDCTL, QEMU, STOCK_VIRSH):
        if not os.access(need, os.X_OK):
            raise pytest.UsageError(f"{need} is missing (bdctl: ninja -C build; "
                                    "QEMU and stock virsh: apt-get install qemu-system-x86 "
                                    "libvirt-clients)")


@pytest.fixture(scope="session")
def daemon():
    d = Daemon(libvirt_prefix())
    d.start()
    yield d
    d.stop()
    if os.path.isdir("/bdout"):
        shutil.copy(LOGFILE, "/bdout/libvirtd.log")


@pytest.fixture(scope="session")
def patched(daemon):
    return daemon.virsh


@pytest.fixture(scope="session")
def pool(patched, tmp_path_factory):
    """The pool 'bd' on VG vg_bd, built by libvirt (pool-build) on a loop device."""
    d = tmp_path_factory.mktemp("pool")
    pv = LoopPV(str(d), "3G")
    xml = d / "pool.xml"
    xml.write_text(pool_xml(POOL, VG, pv.dev))
    patched("pool-define", xml)
    patched("pool-build", POOL)
    patched("pool-start", POOL)
    yield POOL, VG
    patched("pool-destroy", POOL, rc=None)
    patched("pool-undefine", POOL, rc=None)
    pv.remove(VG)


# The series changes virsh only in pool-list --type and -V (tested with the
# patched virsh itself); every vol-* verb's client code is the same in both.
# CI runs these tests with Debian's stock virsh, which shows that clients need
# no patch; tests/run --full runs them with both.
@pytest.fixture(params=["patched", "stock"] if FULL else ["stock"])
def virsh(request, patched):
    """Each vol-* test runs with Debian's stock virsh (and the patched one, --full)."""
    return patched if request.param == "patched" else Virsh(STOCK_VIRSH)


@pytest.fixture
def name():
    """A fresh volume name with a directory in it, as bd names volumes by path."""
    return f"t{uuid.uuid4().hex[:6]}/disk.img"
