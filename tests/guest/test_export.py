"""Exports: create, list, info, threshold, delete."""
import os

import pytest

from conftest import BDCTL, destroy, make_export, sh


def test_export_info_reports_pool_usage(bd):
    info = bd.json("export", "info", bd.name)
    assert info["vg"] == bd.vg and info["thinpool"] == "pool" and info["threshold"] == 90
    assert info["size"] == 512 << 20 and info["chunk_size"] == 64 << 10
    assert 0 <= info["data_percent"] < 1 and 0 < info["metadata_percent"] < 50
    bd.create("/a.img", "64M")
    bd.fill("/a.img", 32, "x")
    info = bd.json("export", "info", bd.name)
    assert 31 << 20 <= info["allocated"] <= 34 << 20
    assert 6 <= info["data_percent"] <= 7
    assert info["volumes"] == 1 and info["leftovers"] == 0
    listed = {e["name"]: e for e in bd.json("export", "list")["exports"]}
    assert listed[bd.name]["vg"] == bd.vg
    human = bd.run("export", "info", bd.name).stdout
    assert f"data {info['data_percent']:.1f}%, metadata {info['metadata_percent']:.1f}%" in human
    assert "when full: error (VMs pause)" in human and f"{bd.name}: VG {bd.vg}" in human


def test_export_tags_live_on_the_vg(bd):
    tags = sh("vgs", "--noheadings", "-o", "vg_tags", bd.vg).stdout.strip().split(",")
    assert f"bd.export={bd.name}" in tags and "bd.pool=pool" in tags and "bd.threshold=90" in tags


def test_export_create_errors(bd, tmp_path):
    r = bd.run("export", "create", bd.name, "--vg", bd.vg, rc=4)
    assert "already exists" in r.stderr
    r = bd.run("export", "create", "other", "--vg", bd.vg, rc=4)
    assert f'already exported as "{bd.name}"' in r.stderr
    r = bd.run("export", "create", "x", "--vg", "novg", rc=3)
    assert "give --pv" in r.stderr
    r = bd.run("export", "create", "bad name", "--vg", "v", rc=2)
    r = bd.run("export", "create", "y", "--vg", "vgy", "--pv", "/dev/nonexistent", rc=1)
    assert "vgcreate" in r.stderr
    assert "vgy" not in sh("vgs", "--noheadings", "-o", "vg_name").stdout


def test_failed_pool_creation_leaves_nothing(tmp_path):
    sh("truncate", "-s", "64M", tmp_path / "small.img")
    loop = sh("losetup", "--find", "--show", tmp_path / "small.img").stdout.strip()
    try:
        r = sh(BDCTL, "export", "create", "toobig", "--vg", "vgsmall", "--pv", loop, "--size",
               "10G", check=False)
        assert r.returncode == 6 and "VG has" in r.stderr and "--size" in r.stderr, r.stderr
        assert "vgsmall" not in sh("vgs", "--noheadings", "-o", "vg_name").stdout
    finally:
        sh("vgremove", "-f", "vgsmall", check=False)
        sh("losetup", "-d", loop)


def lv_bytes(lv, field):
    out = sh("lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", field, lv).stdout
    return int(out.strip())


def test_thin_pool_metadata_is_sized_for_many_volumes(tmp_path):
    """LVM's default (2 MiB here) holds a few hundred thin LVs; bd gives 1/32 of
    the pool, at least 16 MiB, and leaves room for it (and LVM's spare) in %FREE."""
    sh("truncate", "-s", "1G", tmp_path / "m.img")
    loop = sh("losetup", "--find", "--show", tmp_path / "m.img").stdout.strip()
    try:
        sh(BDCTL, "export", "create", "meta1", "--vg", "vgmeta", "--pv", loop,
           "--extents", "100%FREE")
        meta = lv_bytes("vgmeta/pool", "lv_metadata_size")
        data = lv_bytes("vgmeta/pool", "lv_size")
        assert meta >= 16 << 20 and meta >= data // 32, (meta, data)   # LVM alone: 2 MiB
        vg_size = int(sh("vgs", "--noheadings", "--units", "b", "--nosuffix", "-o", "vg_size",
                         "vgmeta").stdout.strip())
        assert vg_size - (8 << 20) <= data + 2 * meta <= vg_size  # all of it, spare included
        sh("vgremove", "-f", "-y", "vgmeta")
        sh(BDCTL, "export", "create", "meta2", "--vg", "vgmeta", "--pv", loop,
           "--size", "256M", "--metadata-size", "64M")
        assert lv_bytes("vgmeta/pool", "lv_metadata_size") == 64 << 20
        assert lv_bytes("vgmeta/pool", "lv_size") == 256 << 20
        sh("vgremove", "-f", "-y", "vgmeta")
        sh("vgcreate", "-q", "vgmeta", loop)                  # a VG that exists already
        sh(BDCTL, "export", "create", "meta4", "--vg", "vgmeta", "--size", "256M")
        assert lv_bytes("vgmeta/pool", "lv_metadata_size") == 16 << 20
        sh("vgremove", "-f", "-y", "vgmeta")
        r = sh(BDCTL, "export", "create", "meta3", "--vg", "vgmeta", "--pv", loop,
               "--extents", "50%VG", check=False)
        assert r.returncode == 2 and "N%FREE" in r.stderr, r.stderr
        assert "vgmeta" not in sh("vgs", "--noheadings", "-o", "vg_name").stdout
    finally:
        sh("vgremove", "-f", "-y", "vgmeta", check=False)
        sh("losetup", "-d", loop)
        os.unlink(tmp_path / "m.img")


def test_threshold_refuses_create_and_clone(tmp_path_factory):
    bd = make_export(tmp_path_factory.mktemp("pv"), "full", pool_size="64M",
                     extra=("--threshold", "50"))
    try:
        bd.create("/big.img", "128M")
        bd.fill("/big.img", 40, "fill")
        r = bd.run("create", bd.spec("/more.img"), "4M", rc=6)
        assert "50% threshold" in r.stderr and "lvextend" in r.stderr and "--threshold" in r.stderr
        bd.run("clone", bd.spec("/big.img"), "/c.img", rc=6)
        bd.run("snapshot", bd.spec("/big.img"), "s", rc=6)
        bd.run("export", "set", bd.name, "--threshold", "95")
        bd.create("/more.img", "4M")
    finally:
        destroy(bd)


def test_export_delete(tmp_path_factory):
    bd = make_export(tmp_path_factory.mktemp("pv"), "gone")
    try:
        bd.create("/keep.img", "8M")
        r = bd.run("export", "delete", bd.name, rc=7)
        assert "--force" in r.stderr and "--destroy" in r.stderr
        bd.run("export", "delete", bd.name, "--force")
        bd.run("list", bd.name, rc=3)
        assert "keep.img" in "".join(bd.lvs())  # data kept
        bd.run("export", "create", bd.name, "--vg", bd.vg)
        assert bd.paths() == ["keep.img"]
        bd.run("export", "delete", bd.name, "--destroy")
        assert bd.vg not in sh("vgs", "--noheadings", "-o", "vg_name").stdout
    finally:
        destroy(bd)
