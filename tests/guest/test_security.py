"""Trust, through bdctl: each test plays the attacker of docs/ARCHITECTURE.md
("Security") with the real thing (a real unprivileged uid, a header a guest
could write, a directory planted before bd first runs) and checks values.

The attacks a local user makes through a bdfs mount are in test_bdfs_security.py;
those through libvirt in tests/libvirt/test_libvirt_security.py.
"""
import fcntl
import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import BDCTL, destroy, lv_name, make_export, sh

NOBODY = 65534


def as_nobody(*argv, **kw):
    return subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY),
                           "--clear-groups", *map(str, argv)], capture_output=True, text=True, **kw)


# ---- 1. private by default ----------------------------------------------------

def test_volumes_are_private_by_default_and_record_owner_and_mode(shared_bd):
    v = shared_bd.create("/priv/default.img", "4M")
    assert (v["uid"], v["gid"], v["mode"]) == (0, 0, 0o600)
    v = shared_bd.create("/priv/given.img", "4M", "--owner", "1234:5678", "--mode", "0640")
    assert (v["uid"], v["gid"], v["mode"]) == (1234, 5678, 0o640)
    v = shared_bd.create("/priv/named.img", "4M", "--owner", "nobody")
    assert (v["uid"], v["gid"]) == (NOBODY, 65534)   # nobody's own group, as chown does
    assert shared_bd.info("/priv/given.img")["mode"] == 0o640   # kept in tags, read back
    for bad in (["--mode", "999"], ["--mode", "10000"], ["--owner", "no-such-user"]):
        r = shared_bd.run("create", shared_bd.spec("/priv/bad.img"), "4M", *bad, rc=2)
        assert "--" in r.stderr and "priv/bad.img" not in shared_bd.paths()


def test_a_volume_made_outside_bd_is_roots_and_private(shared_bd):
    lv = "outside" + uuid.uuid4().hex[:6]
    sh("lvcreate", "-q", "--type", "thin", "-V", "4M", "--thinpool", "pool", "-n", lv,
       shared_bd.vg)
    v = shared_bd.info("/" + lv)
    assert (v["managed"], v["uid"], v["gid"], v["mode"]) == (False, 0, 0, 0o600)


# ---- 2. a guest never decides its image format -----------------------------------

def hostile_header(device, backing):
    """What a guest can write into its raw disk: a qcow2 header whose backing
    file is another volume of the host."""
    sh("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", backing, device, "16M")


def test_a_qcow2_header_written_by_a_guest_does_not_change_the_format(shared_bd):
    secret = shared_bd.create("/fmt/secret.img", "4M")
    shared_bd.write("/fmt/secret.img", b"SECRET OF ANOTHER VM")
    guest = shared_bd.create("/fmt/guest.img", "16M")
    hostile_header(guest["device"], secret["device"])
    assert json.loads(sh("qemu-img", "info", "--output=json", guest["device"]).stdout)[
        "format"] == "qcow2"                                 # it does look like qcow2
    disk = shared_bd.run("domain-disk", shared_bd.spec("/fmt/guest.img")).stdout
    assert 'type="raw"' in disk and "qcow2" not in disk, disk
    assert shared_bd.info("/fmt/guest.img")["format"] == "raw"
    # A copy is a copy of the bytes, header and all, never of the backing file.
    copy = shared_bd.json("clone", "--full", shared_bd.spec("/fmt/guest.img"), "/fmt/copy.img")
    assert copy["format"] == "raw"
    with open(copy["device"], "rb") as f:
        head = f.read(4 << 20)
    assert head[:4] == b"QFI\xfb" and b"SECRET OF ANOTHER VM" not in head


# ---- 3. locks nobody else can plant ------------------------------------------------

@pytest.mark.serial  # removes /run/bd and /run/lock/bd
def test_a_planted_lock_directory_steers_nothing(tmp_path_factory):
    name = "k" + uuid.uuid4().hex[:6]
    planted = "/etc/bd-planted-" + uuid.uuid4().hex[:6]
    # The attacker, before bd ever runs: the old world-writable lock directory,
    # a symlink where the lock would be, and a held lock on the next name.
    shutil.rmtree("/run/lock/bd", ignore_errors=True)
    shutil.rmtree("/run/bd", ignore_errors=True)
    as_nobody("mkdir", "-m", "0777", "/run/lock/bd", check=True)
    as_nobody("ln", "-s", planted, f"/run/lock/bd/{name}.lock", check=True)
    holder = subprocess.Popen(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY),
                               "--clear-groups", "flock", "/run/lock/bd/held.lock", "sleep", "600"])
    bd = make_export(tmp_path_factory.mktemp("pv"), name)
    try:
        t0 = time.monotonic()
        bd.create("/a.img", "4M")
        assert time.monotonic() - t0 < 30
        assert not os.path.lexists(planted)                 # root created nothing through the link
        st = os.lstat("/run/bd")
        assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o700) and os.path.isdir("/run/bd")
    finally:
        holder.kill()
        destroy(bd)


def test_a_runtime_directory_others_can_write_is_refused(shared_bd, tmp_path):
    theirs = tmp_path / "theirs"                           # made by a user, say
    os.mkdir(theirs, 0o700)
    os.chown(theirs, NOBODY, NOBODY)
    r = shared_bd.run("create", shared_bd.spec("/lockdir.img"), "4M", rc=1,
                      env={"BD_RUN_DIR": str(theirs)})
    assert f"refusing bd's runtime directory {theirs}" in r.stderr and "uid 65534" in r.stderr
    os.symlink("/run/bd", tmp_path / "link")
    r = shared_bd.run("create", shared_bd.spec("/lockdir.img"), "4M", rc=None,
                      env={"BD_RUN_DIR": str(tmp_path / "link")})
    assert r.returncode != 0 and "not a symlink" in r.stderr
    assert "lockdir.img" not in shared_bd.paths()


def test_a_symlink_in_the_runtime_directory_is_never_followed(shared_bd, tmp_path):
    run = tmp_path / "run"
    os.mkdir(run, 0o700)
    vg_uuid = sh("vgs", "--noheadings", "-o", "vg_uuid", shared_bd.vg).stdout.strip()
    target = tmp_path / "target"
    os.symlink(target, run / f"vg-{vg_uuid}.lock")
    r = shared_bd.run("create", shared_bd.spec("/follow.img"), "4M", rc=None,
                      env={"BD_RUN_DIR": str(run)})
    assert r.returncode != 0 and "Too many levels of symbolic links" in r.stderr, r.stderr
    assert not os.path.lexists(target)


def test_two_names_never_claim_one_vg(tmp_path_factory):
    bd = make_export(tmp_path_factory.mktemp("pv"), "c" + uuid.uuid4().hex[:6])
    try:
        bd.run("export", "delete", bd.name)            # an unexported VG with its pool
        for round_ in range(3):
            names = [f"x{round_}a{uuid.uuid4().hex[:4]}", f"x{round_}b{uuid.uuid4().hex[:4]}"]
            procs = [subprocess.Popen([BDCTL, "export", "create", n, "--vg", bd.vg],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for n in names]
            codes = sorted(p.wait() for p in procs)
            assert codes == [0, 4], [p.stderr.read() for p in procs]
            tags = sh("vgs", "--noheadings", "-o", "vg_tags", bd.vg).stdout.strip().split(",")
            exported = [t for t in tags if t.startswith("bd.export=")]
            assert len(exported) == 1, tags
            bd.run("export", "delete", exported[0].split("=", 1)[1])
    finally:
        destroy(bd)


# ---- 4. snapshots: unique names per origin ---------------------------------------

def test_snapshot_names_are_unique_and_rollback_never_guesses(shared_bd):
    a = shared_bd.create("/amb/a.img", "8M")
    shared_bd.write("/amb/a.img", b"first")
    shared_bd.run("snapshot", shared_bd.spec("/amb/a.img"), "/amb/one/s")
    r = shared_bd.run("snapshot", shared_bd.spec("/amb/a.img"), "/amb/two/s", rc=4)
    assert 'already has a snapshot named "s"' in r.stderr and "amb/one/s" in r.stderr
    # A set made by hand (or an older bd) with two snapshots of one name.
    sh("lvcreate", "-q", "-s", "-kn", "-ay", "-pr", "-n", lv_name("amb/two/s"),
       "--addtag", "bd.v=1", "--addtag", "bd.path=amb/two/s", "--addtag", "bd.id=00000000000000ff",
       "--addtag", f"bd.snapof={a['id']}", "--addtag", "bd.snap=s", f"{shared_bd.vg}/{a['lv']}")
    shared_bd.write("/amb/a.img", b"later")
    r = shared_bd.run("rollback", shared_bd.spec("/amb/a.img"), "s", rc=2)
    assert "ambiguous" in r.stderr and '"/amb/one/s"' in r.stderr and '"/amb/two/s"' in r.stderr
    assert shared_bd.checksum("/amb/a.img", 1) != shared_bd.checksum("/amb/one/s", 1)
    shared_bd.run("rollback", shared_bd.spec("/amb/a.img"), "/amb/one/s")
    assert shared_bd.checksum("/amb/a.img", 1) == shared_bd.checksum("/amb/one/s", 1)


def test_a_file_cannot_take_the_name_a_snapshot_link_points_to(shared_bd):
    shared_bd.create("/lnk/a.img", "4M")
    shared_bd.run("snapshot", shared_bd.spec("/lnk/a.img"), "/lnk/keep")   # link: a.img@keep
    r = shared_bd.run("create", shared_bd.spec("/lnk/a.img@keep"), "4M", rc=4)
    assert 'names snapshot "keep"' in r.stderr
    shared_bd.create("/lnk/b.img", "4M")
    shared_bd.run("rename", shared_bd.spec("/lnk/b.img"), "/lnk/a.img@keep", rc=4)
    # and a snapshot whose link name a file already holds is refused
    shared_bd.create("/lnk/a.img@taken", "4M")
    r = shared_bd.run("snapshot", shared_bd.spec("/lnk/a.img"), "/lnk/taken", rc=4)
    assert "could not be reached by its link" in r.stderr


# ---- 5. bounded metadata archives --------------------------------------------------

@pytest.mark.long
def test_lvm_archives_of_an_export_stay_bounded(bd):
    def archives():
        return [f for f in os.listdir("/etc/lvm/archive") if f.startswith(bd.vg + "_")]
    for i in range(30):
        bd.create(f"/arc/{i}.img", "4M")
        bd.run("delete", bd.spec(f"/arc/{i}.img"))
    assert 50 <= len(archives()) <= 51, len(archives())    # 60 changes, 50 kept (+ the last)


# ---- 7. no terminal or log injection -------------------------------------------------

def test_control_characters_are_refused_and_never_printed(shared_bd):
    r = shared_bd.run("create", shared_bd.spec("/evil\x1b[2J\nfake: done"), "4M", rc=2)
    assert "control character" in r.stderr and "\x1b" not in r.stderr and "\nfake" not in r.stderr
    # A name made before bd refused them (here by hand) is shown escaped.
    lv = "legacy" + uuid.uuid4().hex[:6]
    sh("lvcreate", "-q", "--type", "thin", "-V", "4M", "--thinpool", "pool", "-n", lv,
       "--addtag", "bd.v=1", "--addtag", "bd.id=00000000000000aa", "--addtag",
       "bd.to=leg!1B!5B2Jacy!0Aline", shared_bd.vg)
    for argv in (["list", shared_bd.name], ["list", "-l", shared_bd.name]):
        out = shared_bd.run(*argv)
        assert "\x1b" not in out.stdout + out.stderr and "\\x1b[2Jacy\\x0aline" in out.stdout
    listed = shared_bd.json("list", shared_bd.name)["volumes"]
    assert "leg\x1b[2Jacy\nline" in [v["path"] for v in listed]   # JSON escapes it itself
    r = shared_bd.run("delete", shared_bd.spec("/nope\x07"), rc=2)
    assert "\x07" not in r.stderr
