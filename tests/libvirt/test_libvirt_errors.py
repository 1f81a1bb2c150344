"""Error paths of the libvirt `bd` pool: each refused, with a useful message, and
leaving nothing half-made. (Deleting a volume a running domain uses is in
test_libvirt_domain.py, which has the only running domain.)"""
import os
import uuid
import xml.etree.ElementTree as ET

from bdlibvirt import BDCTL, bdctl_json, pool_xml, sh, vol_info, vol_path


def lv_names(vg):
    return sh("lvs", "--noheadings", "-o", "lv_name", vg).stdout.split()


def test_duplicate_volume_name(pool, virsh, name):
    pname, vg = pool
    virsh("vol-create-as", pname, name, "8M")
    before = lv_names(vg)
    r = virsh("vol-create-as", pname, name, "8M", rc=1)
    assert "already" in r.stderr or "exists" in r.stderr, r.stderr
    assert lv_names(vg) == before
    virsh("vol-delete", name, "--pool", pname)


def test_duplicate_made_behind_libvirts_back_carries_bdctl_message(pool, virsh, name):
    pname, vg = pool
    # libvirt does not know this one yet, so only bdctl can refuse the second
    sh(BDCTL, "create", f"{pname}:/{name}", "8M")
    before = lv_names(vg)
    r = virsh("vol-create-as", pname, name, "8M", rc=1)
    assert "bdctl: " in r.stderr and "exists" in r.stderr, r.stderr
    assert lv_names(vg) == before
    virsh("pool-refresh", pname)
    virsh("vol-delete", name, "--pool", pname)


def test_unknown_volume(pool, virsh, name):
    """A volume libvirt still lists but bd no longer has (deleted behind
    libvirt's back): each verb reaches the backend, which reports bdctl's
    ENOENT as libvirt's no-such-volume, naming the volume."""
    pname, _ = pool
    virsh("vol-create-as", pname, name, "8M")
    sh(BDCTL, "delete", f"{pname}:/{name}")
    for verb in (["vol-delete"], ["vol-resize", "--capacity", "16M"],
                 ["vol-clone", "--newname", name + ".clone"]):
        args = [verb[0], "--vol", name, "--pool", pname] + verb[1:]
        r = virsh(*args, rc=1)
        assert "Storage volume not found" in r.stderr and f'"{name}" not found' in r.stderr, \
            (verb, r.stderr)
    virsh("pool-refresh", pname)
    assert name not in virsh("vol-list", pname).stdout
    r = virsh("vol-info", "--vol", "no/such.img", "--pool", pname, rc=1)  # libvirt's own check
    assert "Storage volume not found: no storage vol with matching path 'no/such.img'" in r.stderr


def test_malformed_pool_xml(patched, virsh, tmp_path):
    tag = uuid.uuid4().hex[:4]
    bad = tmp_path / "bad.xml"
    bad.write_text(f"<pool type='bd'><name>broken{tag}</name><source><name>vg_x</name></source>")
    r = virsh("pool-define", bad, rc=1)
    assert "Premature end of data in tag pool" in r.stderr, r.stderr
    # well-formed, but with neither a pool name nor a volume group (either
    # alone would do: like a logical pool, each defaults to the other)
    noname = tmp_path / "noname.xml"
    noname.write_text("<pool type='bd'><source/></pool>")
    r = virsh("pool-define", noname, rc=1)
    assert "missing pool source name element" in r.stderr, r.stderr
    # a bd volume group name with a stray component
    badvg = tmp_path / "badvg.xml"
    badvg.write_text(f"<pool type='bd'><name>badvg{tag}</name><source><name>vg/tp/x</name>"
                     "</source></pool>")
    r = virsh("pool-define", badvg, rc=1)
    assert ("bd pool source name 'vg/tp/x' must be 'VG', 'VG/THINPOOL' or 'VG@THINPOOL'"
            in r.stderr), r.stderr
    # a shared VG's export is VG@THINPOOL: one '@', no '/'
    for bad_name in ("vg@tp@x", "vg@tp/x", "vg@", "@tp"):
        badvg.write_text(f"<pool type='bd'><name>badvg{tag}</name><source><name>{bad_name}"
                         "</name></source></pool>")
        r = virsh("pool-define", badvg, rc=1)
        assert f"bd pool source name '{bad_name}' must be" in r.stderr, (bad_name, r.stderr)
    # an unknown pool type, for contrast: the daemon knows bd but not this
    other = tmp_path / "other.xml"
    other.write_text("<pool type='bdx'><name>x</name><source><name>v</name></source></pool>")
    assert "bdx" in virsh("pool-define", other, rc=1).stderr
    listing = virsh("pool-list", "--all").stdout
    assert f"broken{tag}" not in listing and f"badvg{tag}" not in listing


def test_pool_whose_vg_is_missing(patched, virsh, tmp_path):
    name = "miss" + uuid.uuid4().hex[:4]
    xml = tmp_path / "pool.xml"
    xml.write_text(pool_xml(name, "vg_" + name))
    virsh("pool-define", xml)
    try:
        r = virsh("pool-start", name, rc=1)
        assert f"vg_{name}" in r.stderr and "bd export" in r.stderr, r.stderr
        assert "inactive" in virsh("pool-info", name).stdout
        # pool-build on a device that does not exist: bdctl's own error
        virsh("pool-undefine", name)
        xml.write_text(pool_xml(name, "vg_" + name, "/dev/no-such-disk"))
        virsh("pool-define", xml)
        r = virsh("pool-build", name, rc=1)
        assert "no-such-disk" in r.stderr, r.stderr
        assert not [e for e in bdctl_json("export", "list")["exports"] if e["name"] == name]
    finally:
        virsh("pool-undefine", name, rc=None)


def test_shared_vg_spelling_on_a_local_export(pool, virsh, tmp_path):
    """VG@THINPOOL names an export of a VG that several hosts share
    (tests/cluster runs those): on a VG of this host's own it is refused, with
    the spelling to use, and pool-build makes nothing."""
    pname, vg = pool
    thinpool = bdctl_json("export", "info", pname)["thinpool"]
    other = pname + "-at"
    xml = tmp_path / "at.xml"
    xml.write_text(pool_xml(other, f"{vg}@{thinpool}"))
    virsh("pool-define", xml)
    try:
        target = virsh("pool-dumpxml", other).stdout
        assert f"<path>/dev/disk/by-bd/{vg}@{thinpool}</path>" in target, target
        before = lv_names(vg)
        r = virsh("pool-start", other, rc=1)
        assert (f"volume group '{vg}' is not shared by several hosts: name its export in the "
                "pool's source as 'VG' or 'VG/THINPOOL'") in r.stderr, r.stderr
        assert "inactive" in virsh("pool-info", other).stdout
        r = virsh("pool-build", other, rc=1)
        assert (f"pool-build cannot make export '{thinpool}' of volume group '{vg}': a source "
                "'VG@THINPOOL' names an export of a shared volume group, whose thin pool needs "
                f"a size; make it with 'bdctl export create {thinpool} --vg {vg} --shared --size "
                "SIZE', then start the pool" in r.stderr), r.stderr
        assert lv_names(vg) == before
        # find-storage-pool-sources offers the export as VG/THINPOOL
        sources = ET.fromstring(virsh("find-storage-pool-sources", "bd").stdout)
        names = [s.findtext("name") for s in sources.findall("source")]
        assert f"{vg}/{thinpool}" in names and f"{vg}@{thinpool}" not in names, names
    finally:
        virsh("pool-undefine", other, rc=None)


def test_resize_below_current_size_without_flag(pool, virsh, name):
    pname, _ = pool
    virsh("vol-create-as", pname, name, "64M")
    r = virsh("vol-resize", name, "16M", "--pool", pname, rc=1)
    assert "shrink" in r.stderr, r.stderr
    assert int(sh("blockdev", "--getsize64", vol_path(virsh, pname, name)).stdout) == 64 << 20
    assert vol_info(virsh, pname, name)["Capacity"] == f"{64 << 20} bytes"
    virsh("vol-delete", name, "--pool", pname)


def test_delete_open_volume_carries_bdctl_message(pool, virsh, name):
    """A volume held open (here by this test; by QEMU in test_libvirt_domain)."""
    pname, _ = pool
    virsh("vol-create-as", pname, name, "8M")
    dev = vol_path(virsh, pname, name)
    fd = os.open(dev, os.O_RDONLY)
    try:
        r = virsh("vol-delete", name, "--pool", pname, rc=1)
        assert "bdctl: " in r.stderr and ("open" in r.stderr or "busy" in r.stderr), r.stderr
        assert os.path.exists(dev)
    finally:
        os.close(fd)
    virsh("vol-delete", name, "--pool", pname)
