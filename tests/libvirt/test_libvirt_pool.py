"""The libvirt `bd` pool's verbs through virsh, against real bdctl and LVM in
the test guest. vol-* tests run twice: patched virsh and Debian's /usr/bin/virsh.

    tests/vm/run --mem 3072 --timeout 2400 -- /usr/bin/python3 -m pytest tests/libvirt
"""
import errno
import hashlib
import os
import uuid

from bdlibvirt import (BDCTL, LoopPV, bdctl_json, lv_field, pool_xml, read_dev,
                       sh, vol_info, vol_path, vol_xml, write_dev)

MiB = 1 << 20


def test_capabilities_list_bd(patched):
    out = patched("pool-capabilities").stdout
    assert "<pool type='bd' supported='yes'>" in out
    storage = next(l for l in sh(patched.binary, "-V").stdout.splitlines() if "Storage:" in l)
    assert "bd" in storage.split(), storage


def test_pool_lifecycle(virsh, patched, tmp_path):
    """define, build, start, info, refresh, destroy, start again, undefine."""
    name = "life" + uuid.uuid4().hex[:4]
    vg = "vg_" + name
    pv = LoopPV(str(tmp_path), "1G")
    try:
        xml = tmp_path / "pool.xml"
        xml.write_text(pool_xml(name, vg, pv.dev))
        virsh("pool-define", xml)
        assert "inactive" in virsh("pool-info", name).stdout
        virsh("pool-build", name)
        export = bdctl_json("export", "info", name)         # the export is the pool's name
        assert export["vg"] == vg
        virsh("pool-start", name)
        info = virsh("pool-info", name, "--bytes").stdout
        assert "running" in info
        cap = int(next(l.split(":")[1] for l in info.splitlines() if l.startswith("Capacity")))
        assert cap == export["size"], info                  # the thin pool's size, not the VG's
        # --type bd is the series' change to virsh (stock virsh maps types client-side)
        assert name in patched("pool-list", "--type", "bd").stdout
        target = virsh("pool-dumpxml", name).stdout
        assert f"<path>/dev/disk/by-bd/{vg}</path>" in target and "type='bd'" in target

        # a volume made behind libvirt's back appears on refresh
        sh(BDCTL, "create", f"{name}:/cli.img", "8M")
        assert "cli.img" not in virsh("vol-list", name).stdout
        virsh("pool-refresh", name)
        assert "cli.img" in virsh("vol-list", name).stdout

        virsh("pool-destroy", name)
        assert "inactive" in virsh("pool-info", name).stdout
        assert lv_field(f"/dev/{vg}/" + bdctl_json("info", f"{name}:/cli.img")["lv"],
                        "lv_name")                           # destroy keeps the data
        virsh("pool-start", name)
        assert "cli.img" in virsh("vol-list", name).stdout
        virsh("vol-delete", "cli.img", "--pool", name)
        virsh("pool-destroy", name)
        virsh("pool-delete", name)                           # unexports, keeps the VG
        assert not [e for e in bdctl_json("export", "list")["exports"] if e["name"] == name]
        virsh("pool-undefine", name)
        assert name not in virsh("pool-list", "--all").stdout
    finally:
        virsh("pool-destroy", name, rc=None)
        virsh("pool-undefine", name, rc=None)
        pv.remove(vg)


def test_pool_info_and_refresh(pool, virsh):
    """pool-info carries the thin pool's figures, as bdctl reports them."""
    name, _ = pool
    sh(BDCTL, "create", f"{name}:/info/fill.img", "16M")
    write_dev(bdctl_json("info", f"{name}:/info/fill.img")["device"], os.urandom(4 * MiB))
    virsh("pool-refresh", name)
    out = virsh("pool-info", name, "--bytes").stdout
    info = {k.strip(): v.strip() for k, v in (l.split(":", 1) for l in out.splitlines() if ":" in l)}
    ex = bdctl_json("export", "info", name)
    assert info["State"] == "running"
    assert int(info["Capacity"].split()[0]) == ex["size"]
    assert int(info["Allocation"].split()[0]) == ex["allocated"]
    assert int(info["Available"].split()[0]) == ex["free"]
    assert ex["allocated"] >= 4 * MiB
    sh(BDCTL, "delete", f"{name}:/info/fill.img")
    virsh("pool-refresh", name)


def test_create_info_dumpxml_raw(pool, virsh, name):
    pname, vg = pool
    virsh("vol-create-as", pname, name, "64M")
    dev = vol_path(virsh, pname, name)
    # its link in the pool's tree (the pool's target + its name) names its LV
    assert dev == f"/dev/disk/by-bd/{vg}/{name}", dev
    assert os.readlink(dev).startswith(f"/dev/{vg}/") and os.path.exists(dev)
    assert lv_field(dev, "segtype") == "thin"
    info = vol_info(virsh, pname, name)
    assert info["Type"] == "block"
    assert info["Capacity"] == f"{64 * MiB} bytes"
    x = vol_xml(virsh, pname, name)
    assert x.find("target/format").get("type") == "raw"
    assert x.find("target/path").text == dev
    assert int(x.find("capacity").text) == 64 * MiB
    assert int(x.find("allocation").text) < 1 * MiB      # thin: nothing mapped yet
    write_dev(dev, os.urandom(4 * MiB))
    virsh("pool-refresh", pname)
    alloc = int(vol_xml(virsh, pname, name).find("allocation").text)
    assert 4 * MiB <= alloc < 8 * MiB, alloc              # from the thin mapping, not LV size
    assert alloc == bdctl_json("info", f"{pname}:/{name}")["allocated"]
    virsh("vol-delete", name, "--pool", pname)


def test_create_qcow2(pool, virsh, name):
    pname, _ = pool
    virsh("vol-create-as", pname, name, "64M", "--format", "qcow2")
    dev = vol_path(virsh, pname, name)
    x = vol_xml(virsh, pname, name)
    assert x.find("target/format").get("type") == "qcow2"
    assert int(x.find("capacity").text) == 64 * MiB      # the image's virtual size
    assert '"format": "qcow2"' in sh("qemu-img", "info", "--output=json", "-f", "qcow2", dev).stdout
    virsh("vol-delete", name, "--pool", pname)


def test_vol_clone_is_instant_thin_snapshot(pool, virsh, name):
    pname, _ = pool
    clone = name.replace("disk.img", "clone.img")
    virsh("vol-create-as", pname, name, "64M")
    src = vol_path(virsh, pname, name)
    data = os.urandom(8 * MiB)
    write_dev(src, data)
    virsh("vol-clone", name, clone, "--pool", pname)
    dst = vol_path(virsh, pname, clone)
    # an LVM thin snapshot of the source: shares its blocks, no byte copy
    assert lv_field(dst, "origin") == os.path.basename(os.readlink(src))
    assert lv_field(dst, "segtype") == "thin"
    assert "w" == lv_field(dst, "lv_attr")[1]             # writable
    assert read_dev(dst, len(data)) == data
    assert vol_xml(virsh, pname, clone).find("backingStore/path") is None  # a clone, not a snapshot
    write_dev(dst, b"x" * 4096)
    assert read_dev(src, 4096) == data[:4096]              # copy-on-write
    virsh("vol-delete", clone, "--pool", pname)
    virsh("vol-delete", name, "--pool", pname)


def test_backing_vol_is_read_only_snapshot(pool, virsh, name):
    pname, _ = pool
    snap = name.replace("disk.img", "snap")
    virsh("vol-create-as", pname, name, "32M")
    src = vol_path(virsh, pname, name)
    data = os.urandom(MiB)
    write_dev(src, data)
    virsh("vol-create-as", pname, snap, "32M", "--backing-vol", name,
          "--backing-vol-format", "raw")
    x = vol_xml(virsh, pname, snap)
    assert x.find("backingStore/path").text == src
    assert x.find("backingStore/format").get("type") == "raw"
    dev = x.find("target/path").text
    virsh("pool-refresh", pname)                           # the same paths from a listing
    assert vol_xml(virsh, pname, snap).find("backingStore/path").text == src
    assert lv_field(dev, "origin") == os.path.basename(os.readlink(src))
    assert lv_field(dev, "lv_attr")[1] == "r"              # read-only LV
    assert bdctl_json("info", f"{pname}:/{snap}")["read_only"] is True
    assert read_dev(dev, len(data)) == data
    try:
        write_dev(dev, b"y" * 4096)
        raise AssertionError(f"wrote to the read-only snapshot {dev}")
    except OSError as e:
        assert e.errno in (errno.EPERM, errno.EACCES, errno.EROFS), e
    assert read_dev(dev, len(data)) == data
    r = virsh("vol-delete", name, "--pool", pname, rc=1)   # the snapshot guard
    assert "bdctl:" in r.stderr and "snapshot" in r.stderr, r.stderr
    virsh("vol-delete", name, "--pool", pname, "--delete-snapshots")
    assert snap not in virsh("vol-list", pname).stdout


def test_vol_resize(pool, virsh, name):
    pname, _ = pool
    virsh("vol-create-as", pname, name, "32M")
    virsh("vol-resize", name, "64M", "--pool", pname)
    assert vol_info(virsh, pname, name)["Capacity"] == f"{64 * MiB} bytes"
    assert int(sh("blockdev", "--getsize64", vol_path(virsh, pname, name)).stdout) == 64 * MiB
    r = virsh("vol-resize", name, "32M", "--pool", pname, rc=1)
    assert "shrink" in r.stderr, r.stderr
    assert vol_info(virsh, pname, name)["Capacity"] == f"{64 * MiB} bytes"
    virsh("vol-resize", name, "32M", "--pool", pname, "--shrink")
    virsh("pool-refresh", pname)
    assert vol_info(virsh, pname, name)["Capacity"] == f"{32 * MiB} bytes"
    assert int(sh("blockdev", "--getsize64", vol_path(virsh, pname, name)).stdout) == 32 * MiB
    virsh("vol-delete", name, "--pool", pname)


def test_upload_download_sparse(pool, virsh, name, tmp_path):
    pname, _ = pool
    data = os.urandom(MiB) + bytes(2 * MiB) + os.urandom(MiB)
    src, dst = tmp_path / "in.raw", tmp_path / "out.raw"
    src.write_bytes(data)
    sh("fallocate", "--dig-holes", src)                    # a real hole in the middle
    assert os.stat(src).st_blocks * 512 < len(data)
    virsh("vol-create-as", pname, name, "4M")
    virsh("vol-upload", name, src, "--pool", pname, "--sparse")
    assert hashlib.sha256(read_dev(vol_path(virsh, pname, name), len(data))).digest() == \
        hashlib.sha256(data).digest()
    virsh("vol-download", name, dst, "--pool", pname, "--sparse")
    assert dst.read_bytes() == data
    virsh("vol-delete", name, "--pool", pname)


def test_vol_wipe(pool, virsh, name):
    pname, _ = pool
    virsh("vol-create-as", pname, name, "16M")
    dev = vol_path(virsh, pname, name)
    write_dev(dev, os.urandom(4 * MiB))
    virsh("vol-wipe", name, "--pool", pname)
    assert read_dev(dev, 16 * MiB) == bytes(16 * MiB)
    virsh("pool-refresh", pname)
    assert int(vol_xml(virsh, pname, name).find("allocation").text) == 0   # discarded
    virsh("vol-delete", name, "--pool", pname)


def test_vol_delete(pool, virsh, name):
    pname, _ = pool
    virsh("vol-create-as", pname, name, "8M")
    dev = vol_path(virsh, pname, name)
    lv = os.path.basename(os.readlink(dev))
    virsh("vol-delete", name, "--pool", pname)
    assert name not in virsh("vol-list", pname).stdout
    assert not os.path.lexists(dev)                        # its link went with it
    assert lv not in sh("lvs", "--noheadings", "-o", "lv_name").stdout


def test_bdctl_volumes_show_up_after_refresh(pool, virsh, name):
    pname, _ = pool
    sh(BDCTL, "create", f"{pname}:/{name}", "8M")
    virsh("pool-refresh", pname)
    assert name in virsh("vol-list", pname).stdout
    assert vol_info(virsh, pname, name)["Capacity"] == f"{8 * MiB} bytes"
    virsh("vol-delete", name, "--pool", pname)
    assert bdctl_json("list", pname)["volumes"] == [] or \
        name not in [v["path"] for v in bdctl_json("list", pname)["volumes"]]
