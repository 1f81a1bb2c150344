"""bdctl diff: the chunks that changed in a thin volume, read from dm-thin's
own mappings under a reserved metadata snapshot, and that snapshot released
on every path, including a bdctl killed in the middle (pool_snap.h)."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import BDCTL, sh


def held(bd):
    """Whether the export's thin pool holds a metadata snapshot (the status
    line's 'held metadata root' field is a block number, not '-')."""
    words = sh("dmsetup", "status", f"{bd.vg}-pool-tpool").stdout.split()
    assert words[2] == "thin-pool", words
    return words[6] != "-"


def chunk_of(bd):
    return bd.json("export", "info", bd.name)["chunk_size"]


def write_chunks(bd, path, chunk, first, count, seed):
    data = (seed.encode() * chunk)[:chunk]
    with open(bd.device(path), "r+b") as f:
        for i in range(first, first + count):
            f.seek(i * chunk)
            f.write(data[i % 7:] + data[:i % 7])
        f.flush()
        os.fsync(f.fileno())


def ranges(doc, chunk):
    """[(kind, first chunk, chunks)] of a diff's JSON."""
    out = []
    for r in doc["ranges"]:
        assert r["offset"] % chunk == 0 and r["length"] % chunk == 0, r
        out.append((r["kind"], r["offset"] // chunk, r["length"] // chunk))
    return out


def test_diff_lists_exactly_the_chunks_that_changed(bd):
    chunk = chunk_of(bd)
    bd.create("/vm/disk0.img", "64M")
    write_chunks(bd, "/vm/disk0.img", chunk, 0, 4, "before")
    bd.run("snapshot", bd.spec("/vm/disk0.img"), "n1")
    write_chunks(bd, "/vm/disk0.img", chunk, 2, 2, "after")      # rewritten
    write_chunks(bd, "/vm/disk0.img", chunk, 100, 3, "fresh")    # where n1 read zeros
    sh("blkdiscard", "-o", "0", "-l", str(chunk), bd.device("/vm/disk0.img"))  # gone
    bd.run("snapshot", bd.spec("/vm/disk0.img"), "n2")
    want = [("removed", 0, 1), ("changed", 2, 2), ("added", 100, 3)]

    d = bd.json("diff", bd.spec("/vm/disk0.img"), "--from", "n1", "--to", "n2")
    assert ranges(d, chunk) == want
    assert d["chunk_size"] == chunk
    assert d["from"]["snapshot"] == "n1" and d["to"]["snapshot"] == "n2"
    assert (d["changed_bytes"], d["added_bytes"], d["removed_bytes"]) == (2 * chunk, 3 * chunk,
                                                                          chunk)
    assert not held(bd)
    # What the diff says matches the data: every chunk it names differs between
    # the two snapshots, and the ones it leaves out are equal.
    # (Each device is looked up once: a `bdctl info` per chunk cost 3 minutes.)
    with open(bd.device("/vm/disk0.img@n1"), "rb") as f1, \
            open(bd.device("/vm/disk0.img@n2"), "rb") as f2:
        for i in range(0, 110):
            a, b = f1.read(chunk), f2.read(chunk)
            assert len(a) == len(b) == chunk, i
            named = any(first <= i < first + n for _, first, n in want)
            assert (a != b) == named, (i, named)

    # Against the volume as it is now: the same, plus what is written after n2.
    live = bd.json("diff", bd.spec("/vm/disk0.img"), "--from", "/vm/disk0.img@n1")
    assert live["to"] == {"path": "vm/disk0.img", "id": bd.info("/vm/disk0.img")["id"],
                          "size": 64 << 20, "live": True}
    assert ranges(live, chunk) == want
    write_chunks(bd, "/vm/disk0.img", chunk, 50, 1, "later")
    later = bd.json("diff", bd.spec("/vm/disk0.img"), "--from", "n2")
    assert ranges(later, chunk) == [("added", 50, 1)]
    assert ranges(bd.json("diff", bd.spec("/vm/disk0.img"), "--from", "n1", "--to", "n2"),
                  chunk) == want
    assert not held(bd)

    table = bd.run("diff", bd.spec("/vm/disk0.img"), "--from", "n1", "--to", "n2").stdout
    lines = table.splitlines()
    assert lines[0].split() == ["OFFSET", "LENGTH", "KIND"]
    assert lines[1].split() == ["0", str(chunk), "removed"]
    assert lines[3].split() == [str(100 * chunk), str(3 * chunk), "added"]
    assert "3 ranges" in lines[-1] and "from n1 to n2" in lines[-1], lines[-1]


def test_snapshots_show_what_deleting_each_frees_and_it_does(bd):
    chunk = chunk_of(bd)
    bd.create("/db.img", "32M")
    write_chunks(bd, "/db.img", chunk, 0, 6, "one")
    bd.run("snapshot", bd.spec("/db.img"), "s1")
    write_chunks(bd, "/db.img", chunk, 0, 2, "two")  # s1 alone keeps the old 2
    bd.run("snapshot", bd.spec("/db.img"), "s2")      # shares all with db.img
    snaps = {s["snapshot"]: s for s in
             bd.json("snapshots", bd.spec("/db.img"))["snapshots"]}
    assert snaps["s1"]["exclusive"] == 2 * chunk
    assert snaps["s2"]["exclusive"] == 0
    assert not held(bd)
    human = bd.run("snapshots", bd.spec("/db.img")).stdout.splitlines()
    assert human[0].split()[:4] == ["SNAPSHOT", "SIZE", "ALLOC", "FREES"]
    before = bd.json("export", "info", bd.name)["allocated"]
    bd.run("delete", bd.spec("/db.img@s1"))
    assert before - bd.json("export", "info", bd.name)["allocated"] == 2 * chunk


def test_diff_names_what_it_cannot_compare(bd):
    bd.create("/a.img", "16M")
    bd.create("/b.img", "16M")
    bd.create("/thick.img", "8M", "--thick")
    bd.run("snapshot", bd.spec("/a.img"), "n1")
    bd.run("snapshot", bd.spec("/b.img"), "n1")
    r = bd.run("diff", bd.spec("/a.img"), "--from", "nope", rc=3)
    assert 'snapshot "nope" of "a.img" not found' in r.stderr
    assert f"bdctl snapshots {bd.name}:/a.img" in r.stderr
    # Another volume's snapshot is not one of a.img's.
    r = bd.run("diff", bd.spec("/a.img"), "--from", "/b.img@n1", rc=3)
    assert "not found" in r.stderr
    r = bd.run("diff", bd.spec("/a.img@n1"), "--from", "n1", rc=2)
    assert "is a snapshot" in r.stderr and '"a.img"' in r.stderr
    r = bd.run("diff", bd.spec("/thick.img"), "--from", "n1", rc=2)
    assert "thick" in r.stderr
    bd.run("diff", bd.spec("/a.img"), rc=2)  # --from is required
    assert not held(bd)


def slow_thin_delta(tmp_path):
    """A thin_delta first in PATH that says when it runs (its pid), then
    sleeps: the reservation is held meanwhile."""
    ready = tmp_path / "ready"
    wrapper = tmp_path / "bin" / "thin_delta"
    wrapper.parent.mkdir()
    wrapper.write_text(f"#!/bin/sh\necho $$ > {ready}\nexec sleep 60\n")
    wrapper.chmod(0o755)
    env = dict(os.environ, PATH=f"{wrapper.parent}:{os.environ['PATH']}")
    return ready, env


def wait_for(what, cond, seconds=30):
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def children(pid):
    """The pids whose parent is `pid`, with their argv[0]."""
    out = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) != pid:
                        continue
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    out[int(p)] = f.read().split(b"\0")[0].decode()
            except (OSError, IndexError):
                pass  # gone meanwhile
    return out


def start_diff_and_hold(bd, tmp_path):
    if "v.img" not in bd.paths():
        bd.create("/v.img", "16M")
        bd.run("snapshot", bd.spec("/v.img"), "n1")
    tmp_path.mkdir(exist_ok=True)
    ready, env = slow_thin_delta(tmp_path)
    p = subprocess.Popen([BDCTL, "diff", bd.spec("/v.img"), "--from", "n1"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for("thin_delta to start", lambda: ready.exists() and ready.read_text().strip())
    sleeper = int(ready.read_text())
    assert held(bd), "bdctl reserved no metadata snapshot before thin_delta"
    return p, sleeper


def test_a_diff_killed_mid_way_leaves_no_metadata_snapshot_held(bd, tmp_path):
    p, sleeper = start_diff_and_hold(bd, tmp_path)
    os.kill(p.pid, signal.SIGKILL)  # the OOM killer's way: no cleanup runs in bdctl
    p.communicate()
    wait_for("the guardian to release the metadata snapshot", lambda: not held(bd), 20)
    os.kill(sleeper, signal.SIGKILL)
    # The lock went with the guardian: the next change does not wait for it.
    t = time.monotonic()
    bd.create("/after.img", "8M")
    assert time.monotonic() - t < 30
    assert bd.json("fsck", bd.name)["repaired"] == []


def test_a_leftover_metadata_snapshot_is_released_by_fsck_and_by_the_next_diff(bd, tmp_path):
    p, sleeper = start_diff_and_hold(bd, tmp_path)
    # Kill the guardian first, then bdctl: both gone, as when a whole cgroup is killed.
    guardians = [c for c, argv0 in children(p.pid).items() if argv0 == BDCTL]
    assert len(guardians) == 1, children(p.pid)
    os.kill(guardians[0], signal.SIGKILL)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate()
    os.kill(sleeper, signal.SIGKILL)
    time.sleep(0.5)
    assert held(bd)
    dry = bd.json("fsck", bd.name, "--dry-run")
    assert {"lv": "pool", "action": "would release a metadata snapshot a killed bd left held"} in \
        dry["repaired"]
    assert held(bd)
    done = bd.json("fsck", bd.name)
    assert {"lv": "pool", "action": "released a metadata snapshot a killed bd left held"} in \
        done["repaired"]
    assert not held(bd)

    # Again, and this time the next diff finds it.
    p, sleeper = start_diff_and_hold(bd, tmp_path / "again")
    guardians = [c for c, argv0 in children(p.pid).items() if argv0 == BDCTL]
    os.kill(guardians[0], signal.SIGKILL)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate()
    os.kill(sleeper, signal.SIGKILL)
    assert held(bd)
    r = bd.run("diff", bd.spec("/v.img"), "--from", "n1")
    assert "released a metadata snapshot" in r.stderr
    assert not held(bd)


def test_a_metadata_snapshot_another_tool_holds_is_left_alone(bd):
    bd.create("/v.img", "16M")
    bd.run("snapshot", bd.spec("/v.img"), "n1")
    tpool = f"{bd.vg}-pool-tpool"
    sh("dmsetup", "message", tpool, "0", "reserve_metadata_snap")  # as thin_dump -m users do
    r = bd.run("diff", bd.spec("/v.img"), "--from", "n1", rc=5)
    assert "that bd did not take" in r.stderr
    assert f"dmsetup message {tpool} 0 release_metadata_snap" in r.stderr
    fsck = bd.json("fsck", bd.name)["repaired"]
    assert len(fsck) == 1 and fsck[0]["lv"] == "pool", fsck
    assert fsck[0]["action"].startswith("left alone: a metadata snapshot bd did not take"), fsck
    assert held(bd)
    # Its figure is missing from the listing, which says why, and the list is whole.
    r = bd.run("--json", "snapshots", bd.spec("/v.img"))
    assert "did not take" in r.stderr
    assert [s["snapshot"] for s in json.loads(r.stdout)["snapshots"]] == ["n1"]
    sh("dmsetup", "message", tpool, "0", "release_metadata_snap")
    assert bd.json("diff", bd.spec("/v.img"), "--from", "n1")["ranges"] == []
