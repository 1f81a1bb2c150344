"""Scripts, cloud tooling and virt-manager reach a bd pool through Python:
Debian's python3-libvirt binding (client library 9.0 against the patched
daemon), and virtinst's own classes as virt-manager's "New VM" and "Clone"
wizards call them (virtManager/addstorage.py and clone.py build on exactly
these). Each check reads the LV itself: data, size, origin."""
import hashlib
import os
import sys
import uuid

import libvirt
import pytest

sys.path.insert(0, "/usr/share/virt-manager")  # where Debian's virtinst lives, as virt-install says
import virtinst  # noqa: E402

from bdlibvirt import lv_field, read_dev, sh

MiB = 1 << 20


@pytest.fixture
def conn(pool):
    c = libvirt.open("qemu:///system")
    yield c
    c.close()


def vol_xml(name, size, fmt="raw"):
    return (f"<volume><name>{name}</name><capacity>{size}</capacity>"
            f"<target><format type='{fmt}'/></target></volume>")


def upload(conn, vol, data):
    st = conn.newStream(0)
    vol.upload(st, 0, len(data), 0)
    st.sendAll(lambda s, n, buf: buf.pop(0) if buf else b"", [data[i:i + MiB]
                                                             for i in range(0, len(data), MiB)])
    st.finish()


def download(conn, vol, n):
    st = conn.newStream(0)
    vol.download(st, 0, n, 0)
    got = []
    st.recvAll(lambda s, buf, acc: acc.append(buf) or len(buf), got)
    st.finish()
    return b"".join(got)


def test_the_python_binding(pool, conn):
    pname, vg = pool
    p = conn.storagePoolLookupByName(pname)
    name = f"py{uuid.uuid4().hex[:4]}/disk.img"
    vol = p.createXML(vol_xml(name, 16 * MiB))
    link = f"/dev/disk/by-bd/{vg}/{name}"
    assert vol.name() == name and vol.path() == link
    assert vol.info()[1] == 16 * MiB
    assert conn.storageVolLookupByPath(link).name() == name
    assert conn.storageVolLookupByPath(os.readlink(link)).name() == name
    assert lv_field(link, "segtype") == "thin"

    data = os.urandom(4 * MiB)
    upload(conn, vol, data)
    assert read_dev(link, len(data)) == data
    assert download(conn, vol, len(data)) == data

    clone = p.createXMLFrom(vol_xml(name.replace("disk", "clone"), 16 * MiB), vol, 0)
    assert lv_field(clone.path(), "origin") == os.path.basename(os.readlink(link))
    assert hashlib.sha256(download(conn, clone, len(data))).digest() == \
        hashlib.sha256(data).digest()

    vol.resize(32 * MiB, 0)
    assert vol.info()[1] == 32 * MiB
    assert int(sh("blockdev", "--getsize64", link).stdout) == 32 * MiB

    vol.wipe(0)
    assert read_dev(link, len(data)) == bytes(len(data))
    assert read_dev(clone.path(), len(data)) == data       # the clone shares nothing it loses

    clone.delete(0)
    vol.delete(0)
    with pytest.raises(libvirt.libvirtError) as e:
        p.storageVolLookupByName(name)
    assert e.value.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL
    assert not os.path.lexists(link)


def test_virtinst_as_virt_manager_drives_it(pool):
    """The "New VM" wizard's storage page makes the disk with
    DeviceDisk.build_vol_install + set_vol_install, the guest is defined by
    Installer.start_install; the "Clone" wizard uses Cloner with the path
    Cloner.generate_clone_disk_path proposes."""
    pname, vg = pool
    conn = virtinst.VirtinstConnection("qemu:///system")
    conn.open(None, None)
    poolobj = conn.storagePoolLookupByName(pname)
    name = f"vm{uuid.uuid4().hex[:4]}"
    volname = virtinst.StorageVolume.find_free_name(conn, poolobj, name, suffix=".qcow2")
    disk = virtinst.DeviceDisk(conn)
    disk.set_vol_install(virtinst.DeviceDisk.build_vol_install(
        conn, volname, poolobj, 0.0625, True, fmt="qcow2"))
    disk.validate()
    guest = virtinst.Guest(conn)
    guest.name = name
    guest.set_os_name("generic")
    guest.currentMemory = guest.memory = 65536
    guest.add_device(disk)
    installer = virtinst.Installer(conn)
    installer.set_install_defaults(guest)
    clone_name = f"{name}-clone"
    try:
        installer.start_install(guest, doboot=False)
        path = f"/dev/disk/by-bd/{vg}/{volname}"
        assert disk.get_source_path() == path
        assert conn.storageVolLookupByPath(path).name() == volname
        assert lv_field(path, "segtype") == "thin"
        sh("qemu-io", "-f", "qcow2", "-c", "write -P 0x33 0 8M", path)

        cloner = virtinst.Cloner(conn, src_name=name)
        cloner.set_clone_name(clone_name)
        for info in cloner.get_nonshare_diskinfos():
            new = virtinst.Cloner.generate_clone_disk_path(conn, name, clone_name,
                                                           info.disk.get_source_path())
            info.set_new_path(new, True)
        cloner.prepare()
        cloner.start_duplicate(None)
        cpath = f"/dev/disk/by-bd/{vg}/{clone_name}.qcow2"
        assert conn.lookupByName(clone_name).XMLDesc(0).count(cpath) == 1
        assert lv_field(cpath, "origin") == os.path.basename(os.readlink(path))
        assert sh("cmp", path, cpath).returncode == 0
    finally:
        for d in (clone_name, name):
            sh("virsh", "-c", "qemu:///system", "undefine", d, "--remove-all-storage",
               check=False)
    assert not os.path.lexists(f"/dev/disk/by-bd/{vg}/{volname}")
