"""End to end, in one nested boot (each one costs minutes under TCG): a
domain whose disk is bdctl domain-disk's <disk type='volume'> runs from a bd
volume that QEMU opens as /dev/VG/LV itself, cannot lose that volume while it
runs, pauses when the thin pool fills instead of seeing an I/O error, and goes
on where it stopped once the pool has grown. What it wrote and read back is
on the LV, whole. See docs/ARCHITECTURE.md, "Security"."""
import hashlib
import os
import re
import stat
import time
import uuid

from bdlibvirt import (BDCTL, QEMU, LoopPV, bdctl_json, build_nested_initramfs, domain_xml,
                       fds_on, fill_pattern, FILL_INIT, pool_xml, read_dev, sh, vol_path)

MiB = 1 << 20


def qemu_pid(dom):
    with open(f"/run/libvirt/qemu/{dom}.pid") as f:
        return int(f.read())


def test_a_vm_runs_on_its_lv_pauses_on_a_full_pool_and_goes_on_when_it_grows(
        daemon, patched, tmp_path):
    """The pool fails writes when full (error mode), QEMU stops the VM on the
    error (bdctl domain-disk's error_policy), nothing is lost, and the VM
    continues where it stopped once the pool has grown."""
    name = "full" + uuid.uuid4().hex[:4]
    vg = "vg_" + name
    dom = "bdfull" + uuid.uuid4().hex[:4]
    serial = f"/var/log/libvirt/qemu/{dom}-serial.log"
    images = "/var/lib/libvirt/images/bd-full"
    # The VM writes 16 MiB into a 12 MiB pool: it pauses three quarters in.
    mib = 16
    qemu = patched.on("qemu:///system")
    pv = LoopPV(str(tmp_path), "256M")
    try:
        sh("vgcreate", "-q", vg, pv.dev)
        sh(BDCTL, "export", "create", name, "--vg", vg, "--size", "12M", "--metadata-size", "4M")
        assert bdctl_json("export", "info", name)["when_full"] == "error"
        (tmp_path / "pool.xml").write_text(pool_xml(name, vg))
        patched("pool-define", tmp_path / "pool.xml")
        patched("pool-start", name)
        patched("vol-create-as", name, "vm/disk.img", "32M")
        dev = bdctl_json("info", f"{name}:/vm/disk.img")["device"]
        dm = os.stat(dev).st_rdev
        assert os.stat(vol_path(patched, name, "vm/disk.img")).st_rdev == dm  # libvirt's path
        disk = bdctl_json("domain-disk", f"{name}:/vm/disk.img", "--pool", name)["xml"]
        assert "type=\"volume\"" in disk and "error_policy=\"stop\"" in disk, disk
        os.makedirs(images, exist_ok=True)
        kernel, initrd, _ = build_nested_initramfs(images, FILL_INIT, mib=mib, bytes=mib * MiB)
        (tmp_path / "dom.xml").write_text(domain_xml(dom, kernel, initrd, serial, name,
                                                     "vm/disk.img", disk=disk))
        # Paused: QEMU is up and holds the disk, the guest has not run yet.
        qemu("create", tmp_path / "dom.xml", "--paused", timeout=900)
        pid = qemu_pid(dom)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode()
        assert os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(QEMU)
        # QEMU opens /dev/VG/LV itself (a block device, not a file), this volume's
        opened = re.search(r'"driver":"host_device","filename":"([^"]+)"', cmdline)
        assert opened and opened.group(1).startswith(f"/dev/{vg}/"), cmdline
        assert os.stat(opened.group(1)).st_rdev == dm, (opened.group(1), dev)
        held = fds_on(pid, lambda st: stat.S_ISBLK(st.st_mode) and st.st_rdev == dm)
        assert held, f"QEMU {pid} holds no fd on {dev} (dm {os.major(dm)}:{os.minor(dm)})"
        # The running domain's volume cannot be deleted.
        r = patched("vol-delete", "vm/disk.img", "--pool", name, rc=1)
        assert "bdctl: " in r.stderr and ("open" in r.stderr or "busy" in r.stderr), r.stderr
        assert os.path.exists(dev) and "vm/disk.img" in patched("vol-list", name).stdout

        qemu("resume", dom)
        deadline = time.monotonic() + 1500
        while "paused" not in qemu("domstate", dom).stdout:
            state = qemu("domstate", dom).stdout
            assert "shut off" not in state, open(serial, errors="replace").read()[-3000:]
            assert time.monotonic() < deadline, "the VM never paused on the full pool"
            time.sleep(2)
        assert "I/O error" in qemu("domstate", dom, "--reason").stdout
        assert "no space" in qemu("domblkerror", dom).stdout
        assert bdctl_json("export", "info", name)["data_percent"] > 99
        assert "BD-E2E-DD" not in open(serial, errors="replace").read()   # still writing
        time.sleep(5)
        assert "paused" in qemu("domstate", dom).stdout                  # and stays paused
        sh("lvextend", "-q", "-L", "+16M", f"{vg}/pool")
        qemu("resume", dom)
        while True:                            # a transient domain is gone once it powers off
            state = qemu("domstate", dom, rc=None)
            if state.returncode or "shut off" in state.stdout:
                break
            assert time.monotonic() < deadline, open(serial, errors="replace").read()[-3000:]
            time.sleep(2)
        console = open(serial, errors="replace").read()
        assert f"BD-E2E-SIZE {32 * MiB}" in console, console[-3000:]     # the whole volume
        assert "BD-E2E-DD 0" in console, console[-3000:]                 # the guest saw no error
        want = hashlib.sha256(fill_pattern(mib)).hexdigest()
        assert f"BD-E2E-SHA256 {want}" in console, console[-3000:]     # and read it back
        assert read_dev(dev, mib * MiB) == fill_pattern(mib)            # on the LV, whole
        # Once QEMU is gone, the volume can go.
        patched("vol-delete", "vm/disk.img", "--pool", name)
        assert not os.path.exists(dev)
    finally:
        qemu("destroy", dom, rc=None)
        patched("pool-destroy", name, rc=None)
        patched("pool-undefine", name, rc=None)
        pv.remove(vg)
