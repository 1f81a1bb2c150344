"""Helpers for the libvirt guest tests: the patched daemon, virsh, and the tiny
nested guest (kernel + busybox initramfs) that the end-to-end test boots.

Imported by conftest.py and the test modules (pytest puts this directory on
sys.path). Nothing here skips: a missing daemon, QEMU or kernel is an error.
"""
import glob
import os
import shutil
import signal
import subprocess
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import sys  # noqa: E402
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from devio import fds_on, read_at as read_dev, write_at as write_dev  # noqa: E402,F401
BUILD = os.environ.get("BD_BUILD_DIR", os.path.join(ROOT, "build"))
BDCTL_DIR = os.path.join(BUILD, "virsh-ext")
BDCTL = os.path.join(BDCTL_DIR, "bdctl")
STOCK_VIRSH = "/usr/bin/virsh"
QEMU = "/usr/bin/qemu-system-x86_64"
PIDFILE = "/run/libvirt/bd-test.pid"
LOGFILE = "/var/log/libvirt/bd-test-libvirtd.log"


def sh(*argv, check=True, env=None, input=None, timeout=600):
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                       env=dict(os.environ, **(env or {})), input=input, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} failed ({r.returncode}):\n"
                             f"{r.stdout}\n{r.stderr}")
    return r


def libvirt_prefix():
    prefix = os.environ.get("BD_LIBVIRT_PREFIX")
    if not prefix:
        prefix = sh(os.path.join(ROOT, "pool-backend", "libvirt", "build-libvirt"),
                    "--print-prefix").stdout.strip()
    if not os.access(os.path.join(prefix, "sbin", "libvirtd"), os.X_OK):
        raise AssertionError(f"no patched libvirtd in {prefix}: run "
                             "pool-backend/libvirt/build-libvirt on the host first")
    return prefix


class Virsh:
    """One virsh binary on one connection URI; raises unless the exit status is rc."""

    def __init__(self, binary, uri="storage:///system"):
        self.binary, self.uri = binary, uri

    def __call__(self, *args, rc=0, timeout=600):
        r = sh(self.binary, "-c", self.uri, *args, check=False, timeout=timeout)
        if rc is not None and r.returncode != rc:
            raise AssertionError(f"{self.binary} {' '.join(map(str, args))}: exit "
                                 f"{r.returncode}, wanted {rc}\n{r.stdout}\n{r.stderr}")
        return r

    def on(self, uri):
        return Virsh(self.binary, uri)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# Where the patched libvirt finds bdctl: its path is fixed when libvirt is
# built (as LVM's tools' are), and bd installs it there. The guest's root is a
# throwaway overlay, so the tests install the build tree's bdctl there.
INSTALLED_BDCTL = "/usr/sbin/bdctl"


def install_bdctl(target=BDCTL):
    if os.path.lexists(INSTALLED_BDCTL):
        os.unlink(INSTALLED_BDCTL)
    # Absolute: BD_BUILD_DIR may be relative to the clone (the cwd), and a
    # relative link in /usr/sbin would name nothing.
    os.symlink(os.path.abspath(target), INSTALLED_BDCTL)


class Daemon:
    """The patched libvirtd (with virtlogd for the QEMU driver). Its PATH has
    no bdctl: the backend runs the one its build found (INSTALLED_BDCTL)."""

    def __init__(self, prefix, link_bdctl=True):
        self.prefix = prefix
        # False: leave /usr/sbin/bdctl as it is (the package test installs it)
        self.link_bdctl = link_bdctl
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                    "LIBVIRT_LOG_OUTPUTS": f"3:file:{LOGFILE}"}
        # Development knob: load storage backends from another directory
        if os.environ.get("BD_LIBVIRT_BACKEND_DIR"):
            self.env["LIBVIRT_STORAGE_BACKEND_DIR"] = os.environ["BD_LIBVIRT_BACKEND_DIR"]
        self.pid = None
        self.virsh = Virsh(f"{prefix}/bin/virsh")

    def start(self, timeout=180):
        for d in ("/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt/qemu",
                  "/var/cache/libvirt"):
            os.makedirs(d, exist_ok=True)
        if self.link_bdctl and not os.path.exists(INSTALLED_BDCTL):
            install_bdctl()
        if not os.path.exists("/run/libvirt/virtlogd-sock"):
            # the QEMU driver hands QEMU's stdio and file chardevs to virtlogd
            sh(f"{self.prefix}/sbin/virtlogd", "--daemon", env=self.env)
        sh(f"{self.prefix}/sbin/libvirtd", "--daemon", "--pid-file", PIDFILE, env=self.env)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if os.path.exists("/run/libvirt/libvirt-sock"):
                last = self.virsh("pool-list", "--all", rc=None, timeout=120)
                if last.returncode == 0:
                    with open(PIDFILE) as f:
                        self.pid = int(f.read())
                    return
            time.sleep(0.3)
        raise AssertionError(f"libvirtd did not answer within {timeout} s: "
                             f"{last.stderr if last else 'no socket'}\n{self.log_tail()}")

    def stop(self, timeout=120):
        if self.pid is None:
            return
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(self.pid):
            if time.monotonic() > deadline:
                raise AssertionError(f"libvirtd {self.pid} did not stop within {timeout} s")
            time.sleep(0.2)
        self.pid = None
        for sock in ("libvirt-sock", "libvirt-sock-ro", "libvirt-admin-sock"):
            try:
                os.unlink(f"/run/libvirt/{sock}")
            except FileNotFoundError:
                pass

    def restart(self):
        self.stop()
        self.start()

    def log_tail(self, n=40):
        try:
            with open(LOGFILE, errors="replace") as f:
                return "libvirtd log:\n" + "".join(f.readlines()[-n:])
        except FileNotFoundError:
            return "(no libvirtd log)"


# ---- the nested guest ----------------------------------------------------

def guest_kernel():
    """(vmlinux, modules_dir) of the test-guest kernel, from tests/vm's cache.

    The ELF vmlinux boots through QEMU's PVH entry: no decompression, which
    nested TCG would pay for dearly."""
    cache = os.path.join(os.environ.get("BD_CACHE_DIR", "/var/cache/bd"), "vm")
    release = os.uname().release
    found = []
    for info in glob.glob(os.path.join(cache, "*", "info")):
        with open(info) as f:
            kv = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        image = os.path.dirname(info)
        if (os.path.exists(os.path.join(image, "vmlinux"))
                and os.path.isdir(kv.get("modules_dir", ""))):
            found.append((kv.get("kernel_release") == release, os.path.getmtime(info),
                          os.path.join(image, "vmlinux"), kv["modules_dir"]))
    if not found:
        raise AssertionError(f"no test-guest kernel in {cache} (tests/vm/build-image makes it)")
    found.sort(reverse=True)
    return found[0][2], found[0][3]


NESTED_INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
export PATH=/bin
exec >/dev/ttyS0 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo BD-E2E-INIT
for m in {modules}; do insmod "$m" || echo "BD-E2E-INSMOD-FAILED $m"; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
echo "BD-E2E-SIZE $(blockdev --getsize64 /dev/vda)"
set -- $(sha256sum /dev/vda)
echo "BD-E2E-SHA256 $1"
echo BD-E2E-DONE
sync
poweroff -f
"""


# An /init that prints the disk's size, writes a pattern over its first MIB
# MiB, then prints dd's status and the sha256 of what it reads back (the
# full-pool test).
FILL_INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
export PATH=/bin
exec >/dev/ttyS0 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo BD-E2E-INIT
for m in {modules}; do insmod "$m" || echo "BD-E2E-INSMOD-FAILED $m"; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
echo "BD-E2E-SIZE $(blockdev --getsize64 /dev/vda)"
yes bdfill | dd of=/dev/vda bs=1M count={mib} iflag=fullblock oflag=direct 2>/dev/null
echo "BD-E2E-DD $?"
set -- $(head -c {bytes} /dev/vda | sha256sum)
echo "BD-E2E-SHA256 $1"
echo BD-E2E-DONE
sync
poweroff -f
"""


def fill_pattern(mib):
    """What FILL_INIT writes: "bdfill\\n" over `mib` MiB."""
    return (b"bdfill\n" * ((mib << 20) // 7 + 1))[:mib << 20]


def build_nested_initramfs(dest_dir, init=None, **fmt):
    """Writes DEST_DIR/initrd.img (uncompressed cpio: busybox, the virtio
    modules and an /init, by default one that prints /dev/vda's sha256 on ttyS0
    and powers off), copies the kernel next to it and returns (kernel, initrd)."""
    vmlinux, modules_dir = guest_kernel()
    release = os.path.basename(modules_dir.rstrip("/"))
    tree = os.path.dirname(os.path.dirname(os.path.dirname(modules_dir.rstrip("/"))))
    r = sh("modprobe", "-d", tree, "-S", release, "--show-depends", "-a",
           "virtio_pci", "virtio_blk")
    kos = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if parts[:1] == ["insmod"] and parts[1] not in kos:
            kos.append(parts[1])
    root = os.path.join(dest_dir, "root")
    shutil.rmtree(root, ignore_errors=True)
    for d in ("bin", "dev", "proc", "sys", "mod"):
        os.makedirs(os.path.join(root, d))
    shutil.copy("/bin/busybox", os.path.join(root, "bin", "busybox"))
    names = []
    for ko in kos:
        name = os.path.basename(ko)
        shutil.copy(ko, os.path.join(root, "mod", name))
        names.append("/mod/" + name)
    with open(os.path.join(root, "init"), "w") as f:
        f.write((init or NESTED_INIT).format(modules=" ".join(names), **fmt))
    os.chmod(os.path.join(root, "init"), 0o755)
    os.mknod(os.path.join(root, "dev", "console"), 0o600 | 0o020000, os.makedev(5, 1))
    initrd = os.path.join(dest_dir, "initrd.img")
    files = sh("sh", "-c", "cd \"$1\" && find . -mindepth 1 | LC_ALL=C sort", "sh", root).stdout
    with open(initrd, "wb") as out:
        subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"], cwd=root,
                       input=files.encode(), stdout=out, check=True)
    shutil.rmtree(root)
    kernel = os.path.join(dest_dir, "vmlinux")
    shutil.copy(vmlinux, kernel)
    for p in (dest_dir, kernel, initrd):
        os.chmod(p, 0o755 if os.path.isdir(p) else 0o644)
    return kernel, initrd, kos


def run_nested_guest(qemu, domain, serial_log, size, sha256, timeout=1200):
    """Resumes the paused `domain`, waits for it to power off, and checks what
    its /init printed: the disk's size and sha256. Returns the seconds it ran."""
    import re
    t0 = time.monotonic()
    qemu("resume", domain)
    while "shut off" not in qemu("domstate", domain).stdout:
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"the nested guest did not power off within {timeout} s:\n"
                                 + open(serial_log, errors="replace").read()[-3000:])
        time.sleep(2)
    console = open(serial_log, errors="replace").read()
    assert "BD-E2E-DONE" in console, console[-3000:]
    assert f"BD-E2E-SIZE {size}" in console, console[-3000:]
    got = re.search(r"BD-E2E-SHA256 ([0-9a-f]{64})", console)
    assert got and got.group(1) == sha256, console[-3000:]
    return time.monotonic() - t0


def domain_xml(name, kernel, initrd, serial_log, pool, volume, disk=None):
    """A domain booting `kernel` with the bd volume as vda; `disk` replaces the
    <disk> element (e.g. bdctl domain-disk's)."""
    disk = disk or f"""<disk type='volume' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='native'/>
      <source pool='{pool}' volume='{volume}'/>
      <target dev='vda' bus='virtio'/>
    </disk>"""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>192</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off cryptomgr.notests tsc=reliable rdinit=/init</cmdline>
  </os>
  <features><acpi/></features>
  <cpu mode='maximum' migratable='off'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{QEMU}</emulator>
    {disk}
    <serial type='file'>
      <source path='{serial_log}'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


# ---- pools and volumes ---------------------------------------------------

class LoopPV:
    """A sparse file in the guest's tmpfs behind a loop device."""

    def __init__(self, directory, size="2G"):
        self.img = os.path.join(directory, f"pv-{uuid.uuid4().hex[:6]}.img")
        sh("truncate", "-s", size, self.img)
        self.dev = sh("losetup", "--find", "--show", self.img).stdout.strip()

    def remove(self, vg):
        sh("vgremove", "-f", "-y", vg, check=False)
        sh("pvremove", "-f", "-y", self.dev, check=False)
        sh("losetup", "-d", self.dev, check=False)
        os.unlink(self.img)


def pool_xml(name, vg, device=None):
    dev = f"<device path='{device}'/>" if device else ""
    return f"<pool type='bd'><name>{name}</name><source>{dev}<name>{vg}</name></source></pool>"


# ---- volume helpers ------------------------------------------------------

def vol_xml(virsh, pool, vol):
    import xml.etree.ElementTree as ET
    return ET.fromstring(virsh("vol-dumpxml", vol, "--pool", pool).stdout)


def vol_path(virsh, pool, vol):
    return virsh("vol-path", vol, "--pool", pool).stdout.strip()


def lv_field(device, field):
    """One `lvs` field of the LV behind /dev/VG/LV, or behind a volume's link
    /dev/disk/by-bd/VG/NAME (a libvirt volume's path) that names it."""
    if device.startswith("/dev/disk/by-bd/"):
        device = os.readlink(device)
    vg, lv = device.split("/")[-2:]
    return sh("lvs", "--noheadings", "-o", field, f"{vg}/{lv}").stdout.strip()


def bdctl_json(*args):
    import json
    return json.loads(sh(BDCTL, "--json", *args).stdout)


def vol_info(virsh, pool, vol):
    """virsh vol-info --bytes as a dict."""
    out = virsh("vol-info", vol, "--pool", pool, "--bytes").stdout
    info = {}
    for line in out.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = v.strip()
    return info
