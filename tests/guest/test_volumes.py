"""Every bdctl volume verb against real LVM, with its error paths."""
import json
import os
import re
import subprocess
import time

import pytest

from conftest import BDCTL, ROOT, sh


def test_create_reports_rounded_size_and_json_fields(shared_bd):
    v = shared_bd.create("/vm/a.img", "10M")
    assert v["size"] == 12 << 20  # whole 4 MiB extents
    assert v["path"] == "vm/a.img" and v["name"] == "a.img"
    assert v["type"] == "thin" and v["managed"] and v["active"] and not v["read_only"]
    assert v["device"] == f"/dev/{shared_bd.vg}/{v['lv']}"
    assert os.path.exists(v["device"])
    assert v["allocated"] == 0
    human = shared_bd.run("create", shared_bd.spec("/vm/b.img"), "10M").stdout
    assert "rounded up to 12.0 MiB" in human


def test_create_thick(shared_bd):
    v = shared_bd.create("/thick.img", "8M", "--thick")
    assert v["type"] == "thick" and v["allocated"] == 8 << 20
    lv = sh("lvs", "--noheadings", "-o", "segtype", f"{shared_bd.vg}/{v['lv']}").stdout.strip()
    assert lv == "linear"


def test_create_duplicate_is_refused(shared_bd):
    shared_bd.create("/dup.img")
    r = shared_bd.run("create", shared_bd.spec("/dup.img"), "8M", rc=4)
    assert 'volume "dup.img" already exists' in r.stderr and "bdctl delete" in r.stderr
    err = shared_bd.json("create", shared_bd.spec("/dup.img"), "8M", rc=4)["error"]
    assert err["code"] == "EEXIST" and err["errno"] == 17


@pytest.mark.parametrize("size,text", [("0", "greater than zero"), ("-1G", "negative"),
                                       ("99999999999999999999", "larger than 8 EiB"),
                                       ("9E", "larger than 8 EiB"), ("12Q", "unknown unit"),
                                       ("lots", "expected a number")])
def test_create_bad_sizes(shared_bd, size, text):
    r = shared_bd.run("create", shared_bd.spec("/bad-size.img"), size, rc=2)
    assert text in r.stderr and f'"{size}"' in r.stderr
    assert "bad-size.img" not in shared_bd.paths()


@pytest.mark.parametrize("path,rc,text", [
    ("/a/../b", 2, '".." components'), ("/a//b", 2, "empty component"),
    ("/" + "x" * 256, 8, "longer than 255"), ("/" + "/".join(["y" * 250] * 5), 8, "LVM tag holds 1024"),
    ("/./a", 2, '"." components')])
def test_create_bad_names(shared_bd, path, rc, text):
    r = shared_bd.run("create", shared_bd.spec(path), "4M", rc=rc)
    assert text in r.stderr


def test_hostile_but_valid_names_round_trip(shared_bd):
    for path in ["sp ace/$(rm -rf ~);|&.img", "ünï/日本語.img", "snapshot", "-dash", "_bd_tmp.x"]:
        v = shared_bd.create("/" + path, "4M")
        assert v["path"] == path
        assert shared_bd.info("/" + path)["lv"] == v["lv"]
        shared_bd.run("delete", shared_bd.spec("/" + path))


def test_unknown_export_and_path(shared_bd):
    r = shared_bd.run("create", "nosuch:/x.img", "4M", rc=3)
    assert 'export "nosuch" not found' in r.stderr
    r = shared_bd.run("info", shared_bd.spec("/missing.img"), rc=3)
    assert 'volume "missing.img" not found' in r.stderr
    shared_bd.run("delete", shared_bd.spec("/missing.img"), rc=3)
    shared_bd.run("clone", shared_bd.spec("/missing.img"), "/y", rc=3)


def test_directory_conflicts(shared_bd):
    shared_bd.create("/dir/inner.img", "4M")
    assert "is a directory" in shared_bd.run("create", shared_bd.spec("/dir"), "4M", rc=4).stderr
    assert "not a directory" in shared_bd.run("create", shared_bd.spec("/dir/inner.img/x"), "4M",
                                              rc=4).stderr


def test_list_dir_and_long(shared_bd):
    shared_bd.create("/lst/one.img", "4M")
    shared_bd.create("/lst/sub/two.img", "4M")
    got = [v["path"] for v in shared_bd.json("list", shared_bd.spec("/lst"))["volumes"]]
    assert got == ["lst/one.img", "lst/sub/two.img"]
    long = shared_bd.run("list", shared_bd.spec("/lst"), "-l").stdout
    assert "/lst/sub/two.img" in long and "MODE" in long


def test_clone_is_instant_copy_on_write(shared_bd):
    shared_bd.create("/src.img", "64M")
    digest = shared_bd.fill("/src.img", 32, "clone")
    clone = shared_bd.json("clone", shared_bd.spec("/src.img"), "/copy/dst.img")
    assert clone["type"] == "thin" and not clone["read_only"]
    assert shared_bd.checksum("/copy/dst.img", 32) == digest
    shared_bd.write("/copy/dst.img", b"changed", 0)
    assert shared_bd.checksum("/src.img", 32) == digest
    assert shared_bd.checksum("/copy/dst.img", 32) != digest
    origin = sh("lvs", "--noheadings", "-o", "origin", f"{shared_bd.vg}/{clone['lv']}").stdout
    assert origin.strip() == shared_bd.info("/src.img")["lv"]


def test_clone_to_other_export_is_refused(shared_bd):
    shared_bd.create("/x1.img", "4M")
    r = shared_bd.run("clone", shared_bd.spec("/x1.img"), "other:/x2.img", rc=2)
    assert "stay inside one export" in r.stderr


def test_clone_full_copies_data_with_progress(shared_bd):
    shared_bd.create("/full-src.img", "64M")
    digest = shared_bd.fill("/full-src.img", 24, "full")
    r = shared_bd.run("clone", "--full", shared_bd.spec("/full-src.img"), "/full-dst.img")
    assert "copying full-src.img: 100%" in r.stderr
    dst = shared_bd.info("/full-dst.img")
    assert shared_bd.checksum("/full-dst.img", 24) == digest
    # Zero runs are not written: the copy is about as sparse as the source.
    assert 24 << 20 <= dst["allocated"] <= 26 << 20
    lv_origin = sh("lvs", "--noheadings", "-o", "origin", f"{shared_bd.vg}/{dst['lv']}").stdout
    assert lv_origin.strip() == ""
    assert not any(n.startswith("_bd_") for n in shared_bd.lvs())


def test_snapshot_is_read_only_and_listed(shared_bd):
    shared_bd.create("/snap-origin.img", "32M")
    digest = shared_bd.fill("/snap-origin.img", 8, "snap")
    s = shared_bd.json("snapshot", shared_bd.spec("/snap-origin.img"), "monday")
    assert s["path"] == "snap-origin.img@monday" and s["type"] == "snapshot"
    assert s["read_only"] and s["origin"] == "snap-origin.img" and s["snapshot"] == "monday"
    assert sh("blockdev", "--getro", s["device"]).stdout.strip() == "1"
    dd = sh("dd", "if=/dev/zero", f"of={s['device']}", "bs=4k", "count=1", "oflag=direct",
            check=False)
    assert dd.returncode != 0
    full = shared_bd.json("snapshot", shared_bd.spec("/snap-origin.img"), "/archive/tuesday")
    assert full["path"] == "archive/tuesday"
    snaps = shared_bd.json("snapshots", shared_bd.spec("/snap-origin.img"))["snapshots"]
    assert sorted(x["snapshot"] for x in snaps) == ["monday", "tuesday"]
    assert shared_bd.checksum("/snap-origin.img@monday", 8) == digest
    human = shared_bd.run("snapshots", shared_bd.spec("/snap-origin.img")).stdout
    assert "monday" in human and "CREATED" in human
    shared_bd.run("snapshot", shared_bd.spec("/snap-origin.img"), "monday", rc=4)
    shared_bd.run("snapshot", shared_bd.spec("/snap-origin.img"), "a/b", rc=2)


def test_rollback_restores_data_and_keeps_links(shared_bd):
    shared_bd.create("/rb.img", "32M")
    before = shared_bd.fill("/rb.img", 8, "before")
    shared_bd.run("snapshot", shared_bd.spec("/rb.img"), "s1")
    after = shared_bd.fill("/rb.img", 8, "after")
    assert after != before
    old_id = shared_bd.info("/rb.img")["id"]
    v = shared_bd.json("rollback", shared_bd.spec("/rb.img"), "s1")
    assert v["path"] == "rb.img" and v["id"] == old_id and not v["read_only"]
    assert shared_bd.checksum("/rb.img", 8) == before
    assert [s["snapshot"] for s in shared_bd.json("snapshots", shared_bd.spec("/rb.img"))["snapshots"]] == ["s1"]
    assert not any(n.startswith("_bd_") for n in shared_bd.lvs())
    shared_bd.run("rollback", shared_bd.spec("/rb.img"), "nope", rc=3)
    shared_bd.run("rollback", shared_bd.spec("/rb.img@s1"), "s1", rc=2)


def test_resize_grow_and_guarded_shrink(shared_bd):
    shared_bd.create("/rs.img", "16M")
    assert shared_bd.json("resize", shared_bd.spec("/rs.img"), "32M")["size"] == 32 << 20
    r = shared_bd.run("resize", shared_bd.spec("/rs.img"), "8M", rc=2)
    assert "refusing to shrink" in r.stderr and "--shrink" in r.stderr
    assert shared_bd.info("/rs.img")["size"] == 32 << 20
    assert shared_bd.json("resize", shared_bd.spec("/rs.img"), "8M", "--shrink")["size"] == 8 << 20
    shared_bd.run("resize", shared_bd.spec("/rs.img"), "0", rc=2)


def test_rename_across_directories(shared_bd):
    shared_bd.create("/mv/a.img", "16M")
    digest = shared_bd.fill("/mv/a.img", 4, "mv")
    v = shared_bd.json("rename", shared_bd.spec("/mv/a.img"), "/elsewhere/b.img")
    assert v["path"] == "elsewhere/b.img"
    assert "mv/a.img" not in shared_bd.paths()
    assert shared_bd.checksum("/elsewhere/b.img", 4) == digest
    shared_bd.create("/mv/taken.img", "4M")
    shared_bd.run("rename", shared_bd.spec("/elsewhere/b.img"), "/mv/taken.img", rc=4)
    shared_bd.run("rename", shared_bd.spec("/elsewhere/b.img"), f"{shared_bd.name}:/mv/c.img")
    assert shared_bd.info("/mv/c.img")["id"] == v["id"]


def test_delete_guards(shared_bd):
    shared_bd.create("/del.img", "16M")
    shared_bd.run("snapshot", shared_bd.spec("/del.img"), "s")
    r = shared_bd.run("delete", shared_bd.spec("/del.img"), rc=7)
    assert "--with-snapshots" in r.stderr and "del.img@s" in r.stderr
    # Open, as a VM would hold it: refused, and nothing is removed.
    holder = subprocess.Popen(["sh", "-c", f"exec 3<{shared_bd.device('/del.img')}; exec sleep 60"])
    try:
        time.sleep(0.5)
        r = shared_bd.run("delete", shared_bd.spec("/del.img"), "--with-snapshots", rc=5)
        assert "is open" in r.stderr
        assert {"del.img", "del.img@s"} <= set(shared_bd.paths())
    finally:
        holder.kill()
        holder.wait()
    gone = shared_bd.json("delete", shared_bd.spec("/del.img"), "--with-snapshots")["deleted"]
    assert gone == ["del.img@s", "del.img"]
    assert not {"del.img", "del.img@s"} & set(shared_bd.paths())


def test_foreign_thin_lvs_appear_and_can_be_adopted(shared_bd):
    vg = shared_bd.vg
    sh("lvcreate", "-q", "--type", "thin", "-V", "8M", "--thinpool", "pool", "-n", "plain", vg)
    sh("lvcreate", "-q", "--type", "thin", "-V", "8M", "--thinpool", "pool", "-n", "sleepy",
       "-an", "-ky", vg)
    by_path = {v["path"]: v for v in shared_bd.json("list", shared_bd.name)["volumes"]}
    assert not by_path["plain"]["managed"] and by_path["plain"]["active"]
    assert not by_path["sleepy"]["active"] and by_path["sleepy"]["allocated"] is None
    v = shared_bd.json("rename", shared_bd.spec("/plain"), "/adopted/plain.img")
    assert v["managed"] and v["path"] == "adopted/plain.img"
    shared_bd.run("snapshot", shared_bd.spec("/adopted/plain.img"), "s")
    shared_bd.run("delete", shared_bd.spec("/sleepy"))


def test_list_makes_a_fixed_number_of_lvm_calls(shared_bd):
    def calls():
        r = shared_bd.run("list", shared_bd.name, env={"BD_TRACE": "1"})
        return len(re.findall(r"^bd: \+\d+ ms run: ", r.stderr, re.M))
    few = calls()
    for i in range(6):
        shared_bd.create(f"/many/{i}.img", "4M")
    assert calls() == few == 1  # one lvs finds the export and reads it


def lvm_execs(tmp_path, *args, env=None):
    """The programs a bdctl run starts, as the kernel saw them (strace), not as bd says."""
    log = tmp_path / "execs"
    sh("strace", "-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-o", log, BDCTL, *args,
       env=env)
    started = [l for l in log.read_text().splitlines() if "execve(" in l and l.endswith("= 0")]
    return [os.path.basename(l.split('execve("', 1)[1].split('"', 1)[0]) for l in started][1:]


def test_a_change_reads_and_commits_in_one_lvm_process(shared_bd, tmp_path):
    # create, clone and snapshot each read the export under the lock and
    # commit: two LVM commands, one `lvm` process (the lvm shell). A fresh
    # export's first change also activates the pool (thin_check): warm it.
    shared_bd.create("/one/warm1.img", "4M")
    assert lvm_execs(tmp_path, "create", shared_bd.spec("/one/a.img"), "8M") == ["lvm"]
    assert lvm_execs(tmp_path, "clone", shared_bd.spec("/one/a.img"), "/one/b.img") == ["lvm"]
    assert lvm_execs(tmp_path, "snapshot", shared_bd.spec("/one/a.img"), "s1") == ["lvm"]
    a, b = shared_bd.info("/one/a.img"), shared_bd.info("/one/b.img")
    origin = sh("lvs", "--noheadings", "-o", "origin", f"{shared_bd.vg}/{b['lv']}").stdout.strip()
    assert origin == a["lv"] and b["id"] != a["id"]
    snaps = shared_bd.json("snapshots", shared_bd.spec("/one/a.img"))["snapshots"]
    assert [s["snapshot"] for s in snaps] == ["s1"]
    # LVM's own refusal, through the shell: its words and bd's exit code for them.
    r = shared_bd.run("create", "--thick", shared_bd.spec("/one/huge.img"), "1T", rc=6)
    assert "insufficient free space" in r.stderr, r.stderr
    assert "/one/huge.img" not in shared_bd.paths()


@pytest.mark.serial  # moves a file every bdctl reads
def test_without_lvmdbusd_profile_each_command_is_its_own_process(shared_bd, tmp_path):
    # The shell needs the command profile Debian's lvm2 ships for lvmdbusd;
    # without it, bd runs one process per command, as before, with the same results.
    # A first change to a fresh export reads twice (it learns which VG to lock)
    # and activates the pool (thin_check): this test may run first.
    shared_bd.create("/one/warm.img", "4M")
    profile = "/etc/lvm/profile/lvmdbusd.profile"
    os.rename(profile, profile + ".away")
    try:
        execs = lvm_execs(tmp_path, "create", shared_bd.spec("/one/c.img"), "8M")
        r = shared_bd.run("create", "--thick", shared_bd.spec("/one/huge.img"), "1T", rc=6)
    finally:
        os.rename(profile + ".away", profile)
    assert execs == ["lvs", "lvcreate"], execs
    assert shared_bd.info("/one/c.img")["size"] == 8 << 20
    assert "insufficient free space" in r.stderr, r.stderr


def test_human_error_for_bad_usage():
    r = sh(BDCTL, "create", check=False)
    assert r.returncode == 2 and "target is required" in r.stderr + r.stdout


def test_pool_xml_and_domain_disk(shared_bd, tmp_path):
    doc = shared_bd.run("pool-xml", shared_bd.name, "--name", "bdpool").stdout
    assert f"<name>{shared_bd.vg}/pool</name>" in doc and "<name>bdpool</name>" in doc
    (tmp_path / "pool.xml").write_text(doc)
    sh("xmllint", "--noout", "--relaxng", f"{ROOT}/xml/storagepool-bd.rng", tmp_path / "pool.xml")
    shared_bd.create("/xml/raw.img", "8M")
    disk = shared_bd.run("domain-disk", shared_bd.spec("/xml/raw.img")).stdout
    assert 'type="raw"' in disk and 'volume="xml/raw.img"' in disk
    assert f'pool="{shared_bd.name}"' in disk
    # The format is recorded at creation; bdctl writes the qcow2 header itself.
    q = shared_bd.create("/xml/q.qcow2", "60M", "--format", "qcow2")
    assert q["format"] == "qcow2" and q["capacity"] == 60 << 20 and q["size"] > 60 << 20
    info = json.loads(sh("qemu-img", "info", "--output=json", q["device"]).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == 60 << 20
    disk = shared_bd.json("domain-disk", shared_bd.spec("/xml/q.qcow2"), "--target", "vdb")["xml"]
    assert 'type="qcow2"' in disk and 'dev="vdb"' in disk and 'error_policy="stop"' in disk
    assert shared_bd.json("clone", shared_bd.spec("/xml/q.qcow2"), "/xml/q2.qcow2")["format"] == "qcow2"
    shared_bd.run("domain-disk", shared_bd.spec("/xml/none.img"), rc=3)


def test_activate(shared_bd):
    v = shared_bd.create("/act/a.img", "8M")
    sh("lvchange", "-an", f"{shared_bd.vg}/{v['lv']}")
    sh("lvcreate", "-q", "-s", "-ky", "-n", "skipped", f"{shared_bd.vg}/{v['lv']}")
    assert not shared_bd.info("/act/a.img")["active"]
    assert shared_bd.json("activate", shared_bd.spec("/act/a.img"))["activated"] == ["act/a.img"]
    assert shared_bd.info("/act/a.img")["active"]
    assert "skipped" in shared_bd.json("activate", shared_bd.name)["activated"]
    assert shared_bd.info("/skipped")["active"]
    # several at once: one lvchange (a pool start after a reboot)
    sh("lvchange", "-an", f"{shared_bd.vg}/{v['lv']}", f"{shared_bd.vg}/skipped")
    r = shared_bd.run("--json", "activate", shared_bd.name, env={"BD_TRACE": "1"})
    assert sorted(json.loads(r.stdout)["activated"]) == ["act/a.img", "skipped"]
    runs = [l for l in r.stderr.splitlines() if re.match(r"bd: \+\d+ ms run: lvchange", l)]
    assert len(runs) == 1 and "--activate y" in runs[0], r.stderr
    assert shared_bd.info("/act/a.img")["active"] and shared_bd.info("/skipped")["active"]
    listed = shared_bd.json("list", shared_bd.name)
    assert listed["export"]["size"] == 512 << 20 and "data_percent" in listed["export"]
