"""Trust, through libvirt: what a guest writes into its disk is data, never
configuration; what the pool XML names is checked before it reaches a path or
an argv. (A full pool pausing a VM, instead of corrupting it, is in
test_libvirt_domain.py: it needs a running domain.) See docs/ARCHITECTURE.md,
"Security"."""
import uuid

from bdlibvirt import (bdctl_json, read_dev, sh, vol_path, vol_xml,
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
