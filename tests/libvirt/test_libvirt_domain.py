"""End to end: a domain boots inside the test guest from a bd volume given as
<disk type='volume'>, reads the disk and prints its sha256 on the serial
console. QEMU (nested TCG, direct kernel boot of a busybox initramfs) opens
the LV's dm device itself. One boot only: it takes a minute or more."""
import hashlib
import os
import stat

from bdlibvirt import QEMU, build_nested_initramfs, domain_xml, fds_on, run_nested_guest, vol_path

DOMAIN = "bde2e"
VOLUME = "vm/e2e.img"
SIZE = 8 << 20
IMAGES = "/var/lib/libvirt/images/bd-e2e"
SERIAL = "/var/log/libvirt/qemu/bde2e-serial.log"


def qemu_pid():
    with open(f"/run/libvirt/qemu/{DOMAIN}.pid") as f:
        return int(f.read())


def test_domain_boots_from_bd_volume(daemon, pool, patched, tmp_path):
    pname, vg = pool
    qemu = patched.on("qemu:///system")
    os.makedirs(IMAGES, exist_ok=True)
    kernel, initrd, _ = build_nested_initramfs(IMAGES)

    # the disk: random data, uploaded through libvirt
    data = os.urandom(SIZE)
    want = hashlib.sha256(data).hexdigest()
    (tmp_path / "disk.raw").write_bytes(data)
    patched("vol-create-as", pname, VOLUME, str(SIZE))
    patched("vol-upload", VOLUME, tmp_path / "disk.raw", "--pool", pname)
    dev = vol_path(patched, pname, VOLUME)
    dm = os.stat(dev).st_rdev

    xml = tmp_path / "domain.xml"
    xml.write_text(domain_xml(DOMAIN, kernel, initrd, SERIAL, pname, VOLUME))
    qemu("define", xml)
    try:
        # paused: QEMU is up and holds the disk, the guest has not run yet
        qemu("start", DOMAIN, "--paused", timeout=900)
        pid = qemu_pid()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode()
        assert os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(QEMU)
        assert os.readlink(dev) in cmdline, cmdline        # /dev/VG/LV itself, not a file
        held = fds_on(pid, lambda st: stat.S_ISBLK(st.st_mode) and st.st_rdev == dm)
        assert held, f"QEMU {pid} holds no fd on {dev} (dm {os.major(dm)}:{os.minor(dm)})"
        print(f"QEMU {pid} holds {held} = {dev}")

        # the running domain's volume cannot be deleted
        r = patched("vol-delete", VOLUME, "--pool", pname, rc=1)
        assert "bdctl: " in r.stderr and ("open" in r.stderr or "busy" in r.stderr), r.stderr
        assert os.path.exists(dev)
        assert "vm/e2e.img" in patched("vol-list", pname).stdout

        ran = run_nested_guest(qemu, DOMAIN, SERIAL, SIZE, want)
        print(f"nested guest ran {ran:.0f} s")
    finally:
        qemu("destroy", DOMAIN, rc=None)
        qemu("undefine", DOMAIN, rc=None)
    # once QEMU is gone, the volume can go
    patched("vol-delete", VOLUME, "--pool", pname)
