"""Trust, through libvirt: what a guest writes into its disk is data, never
configuration; what the pool XML names is checked before it reaches a path or
an argv; a full pool pauses a VM instead of corrupting it. See
docs/ARCHITECTURE.md, "Security"."""
import hashlib
import os
import time
import uuid

from bdlibvirt import (BDCTL, LoopPV, bdctl_json, build_nested_initramfs, domain_xml,
                       fill_pattern, FILL_INIT, pool_xml, read_dev, sh, vol_path, vol_xml,
                       write_dev)

MiB = 1 << 20


def test_permissions_are_recorded_and_reported(pool, virsh, name, tmp_path):
    pname, _ = pool
    xml = tmp_path / "vol.xml"
    xml.write_text(f"""<volume><name>{name}</name><capacity unit='M'>8</capacity>
      <target><permissions><owner>1234</owner><group>5678</group><mode>0640</mode>
      </permissions></target></volume>""")
    virsh("vol-create", pname, xml)
    perms = vol_xml(virsh, pname, name).find("target/permissions")
    assert (perms.find("owner").text, perms.find("group").text, perms.find("mode").text) == \
        ("1234", "5678", "0640")
    info = bdctl_json("info", f"{pname}:/{name}")
    assert (info["uid"], info["gid"], info["mode"]) == (1234, 5678, 0o640)
    virsh("pool-refresh", pname)                      # read back from bd, not from the device
    assert vol_xml(virsh, pname, name).find("target/permissions/mode").text == "0640"
    other = name.replace("disk.img", "default.img")
    virsh("vol-create-as", pname, other, "8M")
    perms = vol_xml(virsh, pname, other).find("target/permissions")
    assert (perms.find("owner").text, perms.find("mode").text) == ("0", "0600")
    virsh("vol-delete", name, "--pool", pname)
    virsh("vol-delete", other, "--pool", pname)


def test_a_qcow2_header_a_guest_writes_changes_nothing(pool, patched, name, tmp_path):
    pname, _ = pool
    secret = name.replace("disk.img", "secret.img")
    copy = name.replace("disk.img", "copy.qcow2")
    patched("vol-create-as", pname, secret, "4M")
    write_dev(vol_path(patched, pname, secret), b"SECRET OF ANOTHER VM" * 1000)
    patched("vol-create-as", pname, name, "16M")
    dev = vol_path(patched, pname, name)
    # The guest's doing: a qcow2 header naming another volume as backing file.
    sh("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
       vol_path(patched, pname, secret), dev, "16M")
    patched("pool-refresh", pname)
    x = vol_xml(patched, pname, name)
    assert x.find("target/format").get("type") == "raw"
    assert x.find("backingStore") is None or x.find("backingStore/path") is None
    assert int(x.find("capacity").text) == 16 * MiB
    # A copy into a qcow2 volume converts the raw bytes, never the backing file.
    xml = tmp_path / "copy.xml"
    xml.write_text(f"<volume><name>{copy}</name><capacity unit='M'>16</capacity>"
                   "<target><format type='qcow2'/></target></volume>")
    patched("vol-create-from", pname, xml, name, "--inputpool", pname)
    out = tmp_path / "out.raw"
    sh("qemu-img", "convert", "-f", "qcow2", "-O", "raw", vol_path(patched, pname, copy), out)
    data = out.read_bytes()
    assert data[:4] == b"QFI\xfb" and b"SECRET OF ANOTHER VM" not in data
    assert data == read_dev(dev, 16 * MiB)
    for v in (copy, name, secret):
        patched("vol-delete", v, "--pool", pname)


def test_pool_source_names_must_be_lvm_names(patched, tmp_path):
    # ".." would make the target path /dev/..; "-vg" and "--force" options of LVM tools
    for i, source in enumerate(["..", "vg/..", "-vg", "vg/--force", "vg x", "vg/$(id)"]):
        name = f"badname{i}{uuid.uuid4().hex[:4]}"
        xml = tmp_path / f"{name}.xml"
        xml.write_text(f"<pool type='bd'><name>{name}</name><source><name>{source}</name>"
                       "</source></pool>")
        r = patched("pool-define", xml, rc=None)
        if r.returncode == 0:
            patched("pool-undefine", name, rc=None)
        assert r.returncode == 1 and "is not an LVM name" in r.stderr, (source, r.stderr)


def test_a_vm_pauses_on_a_full_pool_and_goes_on_when_it_grows(daemon, patched, tmp_path):
    """The pool fails writes when full (error mode), QEMU stops the VM on the
    error (bdctl domain-disk's error_policy), nothing is lost, and the VM
    continues where it stopped once the pool has grown."""
    name = "full" + uuid.uuid4().hex[:4]
    vg = "vg_" + name
    dom = "bdfull" + uuid.uuid4().hex[:4]
    serial = f"/var/log/libvirt/qemu/{dom}-serial.log"
    images = "/var/lib/libvirt/images/bd-full"
    mib = 32
    qemu = patched.on("qemu:///system")
    pv = LoopPV(str(tmp_path), "512M")
    try:
        sh("vgcreate", "-q", vg, pv.dev)
        sh(BDCTL, "export", "create", name, "--vg", vg, "--size", "20M", "--metadata-size", "4M")
        assert bdctl_json("export", "info", name)["when_full"] == "error"
        (tmp_path / "pool.xml").write_text(pool_xml(name, vg))
        patched("pool-define", tmp_path / "pool.xml")
        patched("pool-start", name)
        patched("vol-create-as", name, "disk.img", "64M")
        disk = bdctl_json("domain-disk", f"{name}:/disk.img", "--pool", name)["xml"]
        assert "error_policy=\"stop\"" in disk, disk
        os.makedirs(images, exist_ok=True)
        kernel, initrd, _ = build_nested_initramfs(images, FILL_INIT, mib=mib, bytes=mib * MiB)
        (tmp_path / "dom.xml").write_text(domain_xml(dom, kernel, initrd, serial, name,
                                                     "disk.img", disk=disk))
        qemu("create", tmp_path / "dom.xml", "--paused", timeout=900)
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
        sh("lvextend", "-q", "-L", "+48M", f"{vg}/pool")
        qemu("resume", dom)
        while True:                            # a transient domain is gone once it powers off
            state = qemu("domstate", dom, rc=None)
            if state.returncode or "shut off" in state.stdout:
                break
            assert time.monotonic() < deadline, open(serial, errors="replace").read()[-3000:]
            time.sleep(2)
        console = open(serial, errors="replace").read()
        assert "BD-E2E-DD 0" in console, console[-3000:]                 # the guest saw no error
        want = hashlib.sha256(fill_pattern(mib)).hexdigest()
        assert f"BD-E2E-SHA256 {want}" in console, console[-3000:]
        dev = bdctl_json("info", f"{name}:/disk.img")["device"]
        assert read_dev(dev, mib * MiB) == fill_pattern(mib)            # on the LV, whole
    finally:
        qemu("destroy", dom, rc=None)
        patched("pool-destroy", name, rc=None)
        patched("pool-undefine", name, rc=None)
        pv.remove(vg)
