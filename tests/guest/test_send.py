"""bdctl send: the stream of docs/STREAM.md, read here by an independent
reader written from that document, applied to an image file and compared
with the snapshot the send named."""
import hashlib
import json
import os
import random
import struct
import subprocess
import threading
import time

import pytest

from conftest import BDCTL, destroy, make_export, sh
from depth import sized


def read_stream(data, image=None, base_image=None):
    """Checks a whole stream as docs/STREAM.md says, and applies it to
    `image` (a copy of `base_image`, or zeros). Returns the header."""
    assert data[:8] == b"BDSTREAM"
    version, hlen = struct.unpack_from("<II", data, 8)
    assert version == 1 and 0 < hlen <= 65536
    header_digest = data[16 + hlen:16 + hlen + 32]
    assert hashlib.sha256(data[:16 + hlen]).digest() == header_digest
    header = json.loads(data[16:16 + hlen])
    pos, seq, records, nbytes, last_end = 16 + hlen + 32, 0, 0, 0, 0
    out = None
    if image:
        if base_image:
            sh("cp", "--sparse=always", base_image, image)
        else:
            open(image, "wb").close()
        os.truncate(image, header["size"])
        out = open(image, "r+b")
    while True:
        fixed = data[pos:pos + 24]
        kind = fixed[:1]
        assert fixed[1:4] == b"\0\0\0"
        s, offset, length = struct.unpack_from("<IQQ", fixed, 4)
        payload = data[pos + 24:pos + 24 + length] if kind == b"D" else b""
        digest = data[pos + 24 + len(payload):pos + 24 + len(payload) + 32]
        assert hashlib.sha256(header_digest + fixed + payload).digest() == digest, seq + 1
        seq += 1
        assert s == seq
        pos += 24 + len(payload) + 32
        if kind == b"E":
            assert (offset, length) == (records, nbytes)
            assert pos == len(data), "bytes after the end record"
            break
        assert kind in (b"D", b"H") and offset >= last_end and offset + length <= header["size"]
        last_end = offset + length
        records += 1
        if kind == b"D":
            assert 0 < length <= 1 << 20
            nbytes += length
        if out:
            out.seek(offset)
            if kind == b"D":
                out.write(payload)
            else:
                for done in range(0, length, 1 << 20):
                    out.write(b"\0" * min(1 << 20, length - done))
    if out:
        out.close()
    return header


def send(bd, path, *args, stdout=subprocess.PIPE):
    p = subprocess.run([BDCTL, "--json", "send", bd.spec(path), *args], stdout=stdout,
                       stderr=subprocess.PIPE)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout, json.loads(p.stderr)


def sha_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha_volume(bd, path):
    return bd.checksum_at(path, 0, bd.info(path)["size"])


def write(bd, path, chunk, first, count, seed):
    data = (seed.encode() * chunk)[:chunk]
    with open(bd.device(path), "r+b") as f:
        for i in range(first, first + count):
            f.seek(i * chunk)
            f.write(data)
        os.fsync(f.fileno())


def test_full_and_incremental_streams_carry_exactly_their_snapshots(bd, tmp_path):
    chunk = bd.json("export", "info", bd.name)["chunk_size"]
    bd.create("/vm/disk0.img", "64M")
    write(bd, "/vm/disk0.img", chunk, 0, 8, "a")
    write(bd, "/vm/disk0.img", chunk, 500, 4, "b")
    stream, summary = send(bd, "/vm/disk0.img", "--snapshot", "n1")
    assert summary["made_snapshot"] and summary["base"] is None
    assert summary["data_bytes"] == 12 * chunk          # only the data; zeros stay out
    # A full send reads only what the snapshot maps (thin_dump), not 64 MiB.
    rdev = os.stat(bd.device("/vm/disk0.img@n1")).st_rdev
    stat = f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}/stat"
    read = int(open(stat).read().split()[2]) * 512
    assert read < 4 << 20, read
    assert len(stream) == summary["stream_bytes"] < 12 * chunk + 64 * 1024
    h = read_stream(stream, tmp_path / "n1.img")
    assert h["snapshot"]["name"] == "n1" and h["base"] is None and h["size"] == 64 << 20
    assert h["volume"] == {"export": bd.name, "path": "vm/disk0.img",
                           "id": bd.info("/vm/disk0.img")["id"]}
    assert sha_file(tmp_path / "n1.img") == sha_volume(bd, "/vm/disk0.img@n1")

    write(bd, "/vm/disk0.img", chunk, 2, 2, "c")        # rewritten
    write(bd, "/vm/disk0.img", chunk, 300, 1, "d")      # where n1 read zeros
    sh("blkdiscard", "-o", str(500 * chunk), "-l", str(2 * chunk), bd.device("/vm/disk0.img"))
    stream, summary = send(bd, "/vm/disk0.img", "--snapshot", "n2", "--from", "n1")
    assert summary["base"]["snapshot"] == "n1"
    assert summary["data_bytes"] == 3 * chunk
    h = read_stream(stream, tmp_path / "n2.img", tmp_path / "n1.img")
    assert h["base"]["id"] == bd.info("/vm/disk0.img@n1")["id"]
    assert sha_file(tmp_path / "n2.img") == sha_volume(bd, "/vm/disk0.img@n2")
    # An existing snapshot is sent as it is, not taken again.
    again, summary = send(bd, "/vm/disk0.img", "--snapshot", "n2", "--from", "n1")
    assert not summary["made_snapshot"] and summary["data_bytes"] == 3 * chunk


def test_incremental_sends_move_their_base_only_when_the_stream_is_whole(bd, tmp_path):
    chunk = bd.json("export", "info", bd.name)["chunk_size"]
    bd.create("/db.img", "32M")
    write(bd, "/db.img", chunk, 0, 4, "a")
    stream, s1 = send(bd, "/db.img", "--snapshot", "i1", "--incremental")
    assert s1["base"] is None                            # no base yet: a full stream
    read_stream(stream, tmp_path / "i1.img")
    write(bd, "/db.img", chunk, 10, 1, "b")
    stream, s2 = send(bd, "/db.img", "--snapshot", "i2", "--incremental")
    assert s2["base"]["snapshot"] == "i1" and s2["data_bytes"] == chunk
    read_stream(stream, tmp_path / "i2.img", tmp_path / "i1.img")
    assert sha_file(tmp_path / "i2.img") == sha_volume(bd, "/db.img@i2")
    # A reader that goes away after 100 bytes: the send fails, the base stays i2.
    write(bd, "/db.img", chunk, 11, 1, "c")
    p = subprocess.run(f"{BDCTL} send {bd.spec('/db.img')} --snapshot i3 --incremental | "
                       "head -c 100 >/dev/null; exit ${{PIPESTATUS[0]}}",
                       shell=True, executable="/bin/bash", capture_output=True, text=True)
    assert p.returncode != 0 and "cannot write the stream" in p.stderr, p.stderr
    stream, s4 = send(bd, "/db.img", "--snapshot", "i4", "--incremental")
    assert s4["base"]["snapshot"] == "i2"
    assert s4["data_bytes"] == chunk                     # chunk 11, written since i2
    assert "db.img@i3" in bd.paths()                     # the snapshot it took stays, whole


def send_during_writes(bd, tmp_path):
    """A stream of /busy.img sent while a VM-like writer runs, checked against
    the snapshot it names by the reader of STREAM.md."""
    bd.create("/busy.img", "32M")
    bd.fill("/busy.img", 8, "start")
    stop = threading.Event()

    def writer():
        i = 0
        with open(bd.device("/busy.img"), "r+b") as f:
            while not stop.is_set():
                f.seek((i * 65536) % (24 << 20))
                f.write(os.urandom(65536))
                os.fsync(f.fileno())
                i += 7
    t = threading.Thread(target=writer)
    t.start()
    try:
        stream, summary = send(bd, "/busy.img", "--snapshot", "live")
    finally:
        stop.set()
        t.join()
    read_stream(stream, tmp_path / "live.img")
    assert sha_file(tmp_path / "live.img") == sha_volume(bd, "/busy.img@live")
    return stream


def test_a_send_while_a_writer_runs_is_received_as_the_snapshot_it_names(bd, target, tmp_path):
    stream = send_during_writes(bd, tmp_path)
    got = receive(target, "/busy.img", stream)
    assert same_bytes(got["volume"]["device"], got["snapshot"]["device"],
                      bd.device("/busy.img@live"))


def test_a_send_killed_mid_stream_holds_nothing_and_keeps_its_base(bd):
    chunk = bd.json("export", "info", bd.name)["chunk_size"]
    bd.create("/kill.img", "32M")
    write(bd, "/kill.img", chunk, 0, 8, "a")
    send(bd, "/kill.img", "--snapshot", "b1", "--incremental")
    write(bd, "/kill.img", chunk, 16, 200, "b")  # more than a pipe holds
    p = subprocess.Popen([BDCTL, "send", bd.spec("/kill.img"), "--snapshot", "b2",
                          "--incremental"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.read(4096)  # the stream began; nobody reads the rest
    assert first.startswith(b"BDSTREAM")
    time.sleep(1)
    assert p.poll() is None, "send finished though its reader stopped"
    p.kill()
    p.wait()
    pool = sh("dmsetup", "status", f"{bd.vg}-pool-tpool").stdout.split()
    assert pool[6] == "-", f"a metadata snapshot is held: {pool}"
    assert bd.json("fsck", bd.name)["repaired"] == []
    _, s = send(bd, "/kill.img", "--snapshot", "b3", "--incremental")
    assert s["base"]["snapshot"] == "b1" and s["data_bytes"] == 200 * chunk


def test_send_refuses_what_it_cannot_send(bd):
    bd.create("/v.img", "8M")
    bd.create("/thick.img", "8M", "--thick")
    bd.run("snapshot", bd.spec("/v.img"), "s1")
    r = bd.run("send", bd.spec("/thick.img"), "--snapshot", "x", rc=2)
    assert "thick" in r.stderr
    r = bd.run("send", bd.spec("/v.img"), "--snapshot", "s1", "--from", "s1", rc=2)
    assert "the base itself" in r.stderr
    r = bd.run("send", bd.spec("/v.img"), "--snapshot", "s2", "--from", "nope", rc=3)
    assert "bdctl snapshots" in r.stderr
    assert "v.img@s2" not in bd.paths()                   # nothing taken for a send refused
    r = bd.run("send", bd.spec("/v.img"), "--snapshot", "s2", "--from", "s1", "--incremental",
               rc=2)


# ---- receive ------------------------------------------------------------------


@pytest.fixture
def target(tmp_path_factory):
    t = make_export(tmp_path_factory.mktemp("pv2"), "r" + os.urandom(3).hex())
    yield t
    destroy(t)


def receive(bd, path, stream, rc=0, *extra):
    p = subprocess.run([BDCTL, "--json", "receive", bd.spec(path), *extra], input=stream,
                       capture_output=True)
    assert p.returncode == rc, (p.returncode, p.stderr.decode())
    return json.loads(p.stdout) if rc == 0 else p.stderr.decode()


def state(bd, path):
    """What a failed receive must leave as it was: the volume's data, the
    export's volumes, and its LVs (no temporary one left)."""
    return sha_volume(bd, path), bd.paths(), bd.lvs()


def same_bytes(*devices):
    """True if the devices (or files) hold the same bytes: read side by side,
    as three SHA-256s per round cost seconds under TCG."""
    files = [open(d, "rb") for d in devices]
    try:
        while True:
            blocks = [f.read(1 << 20) for f in files]
            if any(b != blocks[0] for b in blocks[1:]):
                return False
            if not blocks[0]:
                return True
    finally:
        for f in files:
            f.close()


ROUNDS = sized("BD_RECV_ROUNDS", 20, 100)  # the 20; tests/run --full runs 100


@pytest.mark.long
@pytest.mark.timeout(600 + ROUNDS * 60)
def test_twenty_rounds_of_incremental_send_and_receive_match_exactly(bd, target):
    rng = random.Random(11)  # fixed: CI runs the same rounds every time
    chunk = bd.json("export", "info", bd.name)["chunk_size"]
    bd.create("/vm.img", "32M")
    dev, chunks = bd.device("/vm.img"), (32 << 20) // chunk
    write(bd, "/vm.img", chunk, 0, 16, "seed")
    stream, _ = send(bd, "/vm.img", "--snapshot", "r0", "--incremental")
    got = receive(target, "/vm.img", stream)
    assert got["snapshot"]["path"] == "vm.img@r0" and got["updated"]
    data_bytes = 0
    for n in range(1, ROUNDS + 1):
        with open(dev, "r+b") as f:
            for _ in range(rng.randint(1, 6)):  # whole chunks, over earlier holes too
                first, count = rng.randrange(chunks - 4), rng.randint(1, 4)
                f.seek(first * chunk)
                f.write((f"r{n}.{first}".encode() * chunk)[:count * chunk])
            if rng.random() < 0.3:  # a write that is not chunk-aligned
                f.seek(rng.randrange(32 << 20) // 512 * 512)
                f.write(os.urandom(512))
            os.fsync(f.fileno())
        if rng.random() < 0.5:
            first = rng.randrange(chunks - 8)
            sh("blkdiscard", "-o", str(first * chunk), "-l", str(rng.randint(1, 8) * chunk), dev)
        stream, s = send(bd, "/vm.img", "--snapshot", f"r{n}", "--incremental")
        assert s["base"]["snapshot"] == f"r{n - 1}"
        got = receive(target, "/vm.img", stream)
        assert got["updated"] and got["snapshot"]["path"] == f"vm.img@r{n}", got
        assert got["data_bytes"] == s["data_bytes"]
        data_bytes += s["data_bytes"]
        assert same_bytes(s["snapshot"]["device"], got["snapshot"]["device"],
                          got["volume"]["device"]), n
    assert 0 < data_bytes <= ROUNDS * 26 * chunk  # what changed, not whole volumes
    want = sha_volume(bd, f"/vm.img@r{ROUNDS}")
    assert sha_volume(target, f"/vm.img@r{ROUNDS}") == sha_volume(target, "/vm.img") == want
    assert bd.device("/vm.img") == dev
    assert target.json("fsck", target.name)["repaired"] == []


@pytest.mark.long
def test_hostile_streams_leave_the_target_as_it_was(bd, target, tmp_path):
    chunk = bd.json("export", "info", bd.name)["chunk_size"]
    bd.create("/a.img", "16M")
    bd.create("/b.img", "16M")
    write(bd, "/a.img", chunk, 0, 4, "a")
    write(bd, "/b.img", chunk, 0, 4, "b")
    full, _ = send(bd, "/a.img", "--snapshot", "s1")
    receive(target, "/a.img", full)
    write(bd, "/a.img", chunk, 8, 2, "a2")
    good, _ = send(bd, "/a.img", "--snapshot", "s2", "--from", "s1")
    b_full, _ = send(bd, "/b.img", "--snapshot", "s1")
    write(bd, "/b.img", chunk, 8, 2, "b2")
    b_next, _ = send(bd, "/b.img", "--snapshot", "s2", "--from", "s1")
    write(bd, "/a.img", chunk, 12, 1, "a3")
    a_s3, _ = send(bd, "/a.img", "--snapshot", "s3", "--from", "s2")  # base s2: not received yet
    before = state(target, "/a.img")
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x40
    hdr = 16 + struct.unpack_from("<I", good, 12)[0] + 32
    spliced = good[:hdr] + b_next[hdr + 0:]  # records of another volume's stream
    cases = {
        "truncated": (good[:len(good) - 40], 10, "truncated"),
        "flipped byte": (bytes(flipped), 10, "checksum"),
        "another stream's records": (spliced, 10, "another stream"),
        "another volume": (b_next, 2, "another volume"),
        "wrong base": (a_s3, 2, "send with --from s1"),
        "a full stream onto it": (b_full, 4, "full stream"),
    }
    for name, (stream, rc, text) in cases.items():
        err = receive(target, "/a.img", stream, rc)
        assert text in err, (name, err)
        assert state(target, "/a.img") == before, name
    receive(target, "/a.img", good)
    err = receive(target, "/a.img", good, 4)  # replayed
    assert "received already" in err
    assert sha_volume(target, "/a.img") == sha_volume(bd, "/a.img@s2")
    assert target.json("fsck", target.name)["repaired"] == []


def test_a_killed_receive_changes_nothing_and_a_changed_target_needs_force(bd, target, tmp_path):
    chunk = bd.json("export", "info", bd.name)["chunk_size"]
    bd.create("/k.img", "32M")
    write(bd, "/k.img", chunk, 0, 4, "k")
    receive(target, "/k.img", send(bd, "/k.img", "--snapshot", "k1")[0])
    write(bd, "/k.img", chunk, 20, 40, "k2")
    stream, _ = send(bd, "/k.img", "--snapshot", "k2", "--from", "k1")
    before = state(target, "/k.img")
    # Half the stream, then bdctl is killed while it waits for the rest.
    p = subprocess.Popen([BDCTL, "receive", target.spec("/k.img")], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(stream[:len(stream) // 2])
    p.stdin.flush()
    deadline = time.monotonic() + 60
    while not any(lv.startswith("_bd_tmp.") for lv in target.lvs()):
        assert time.monotonic() < deadline, "receive made no temporary LV"
        time.sleep(0.2)
    # Meanwhile the export is not locked, and fsck leaves the receive's LV alone.
    t0 = time.monotonic()
    target.create("/other.img", "4M")
    assert time.monotonic() - t0 < 30
    fsck = target.json("fsck", target.name)["repaired"]
    assert [r["action"][:15] for r in fsck] == ["left alone for "], fsck
    assert p.poll() is None
    p.kill()
    p.wait()
    assert sha_volume(target, "/k.img") == before[0]
    assert target.paths() == sorted(before[1] + ["other.img"])
    fsck = target.json("fsck", target.name)["repaired"]
    assert [r["action"][:7] for r in fsck] == ["removed"], fsck
    target.run("delete", target.spec("/other.img"))
    assert state(target, "/k.img") == before
    # An open target (a running VM's disk) is refused before any data moves.
    with open(target.device("/k.img"), "rb"):
        err = receive(target, "/k.img", stream, 5)
    assert "is open" in err, err
    assert state(target, "/k.img") == before
    # A write to the target since its last receive: refused, then forced.
    write(target, "/k.img", chunk, 100, 1, "local")
    err = receive(target, "/k.img", stream, 5)
    assert "was written to (64.0 KiB in 1 range) since it received" in err and "--force" in err
    got = receive(target, "/k.img", stream, 0, "--force")
    assert sha_volume(target, "/k.img") == sha_volume(bd, "/k.img@k2") == \
        sha_volume(target, "/k.img@k2")


def forge(header, records):
    """A stream with valid digests whose content the test chooses: what a
    hostile sender (or a bug at the other end) can put on the wire."""
    text = json.dumps(header).encode()
    fixed = b"BDSTREAM" + struct.pack("<II", 1, len(text))
    hd = hashlib.sha256(fixed + text).digest()
    out, seq, nbytes = [fixed, text, hd], 0, 0
    for kind, offset, length, payload in records + [(b"E", None, None, b"")]:
        seq += 1
        if kind == b"E":
            offset, length = seq - 1, nbytes
        nbytes += len(payload)
        part = kind + b"\0\0\0" + struct.pack("<IQQ", seq, offset, length)
        out += [part, payload, hashlib.sha256(hd + part + payload).digest()]
    return b"".join(out)


def test_forged_streams_are_data_never_configuration(bd, target):
    chunk = bd.json("export", "info", bd.name)["chunk_size"]
    bd.create("/f.img", "16M")
    write(bd, "/f.img", chunk, 0, 8, "f")
    full, _ = send(bd, "/f.img", "--snapshot", "f1")
    receive(target, "/f.img", full)
    h = json.loads(full[16:16 + struct.unpack_from("<I", full, 12)[0]])
    # A hole that starts and ends inside chunks: whole chunks discarded, the
    # edges written with zeros, the rest of those chunks kept.
    inc = dict(h, stream="1" * 32, base=h["snapshot"], snapshot={"id": "f2id", "name": "f2"})
    got = receive(target, "/f.img", forge(inc, [(b"H", chunk // 2, 3 * chunk, b"")]))
    with open(got["volume"]["device"], "rb") as f:
        data = f.read(8 * chunk)
    want = bytearray((b"f" * chunk) * 8)
    want[chunk // 2:chunk // 2 + 3 * chunk] = bytes(3 * chunk)
    assert data == bytes(want)
    before = state(target, "/f.img")
    nxt = dict(inc, stream="2" * 32, base=inc["snapshot"])
    cases = {
        "a name with a slash": (dict(nxt, snapshot={"id": "x", "name": "a/b"}), 2),
        "a name past 255 bytes": (dict(nxt, snapshot={"id": "x", "name": "n" * 300}), 8),
        "a control character": (dict(nxt, snapshot={"id": "x", "name": "x\nbd.path=evil"}), 2),
        "a size of zero": (dict(nxt, size=0), 2),
        "a size past 2^64": (dict(nxt, size=2 ** 64 - 1), 2),
        "an id that is a tag": (dict(nxt, snapshot={"id": "x bd.uid=4242", "name": "ok"}), None),
    }
    for name, (header, rc) in cases.items():
        p = subprocess.run([BDCTL, "receive", target.spec("/f.img")],
                           input=forge(header, []), capture_output=True)
        if rc is None:  # taken as data: received as the name says, tags escaped
            assert p.returncode == 0, (name, p.stderr)
            info = target.info("/f.img@ok")
            assert info["uid"] == 0 and info["path"] == "f.img@ok"
            target.run("delete", target.spec("/f.img@ok"))
            continue
        assert p.returncode == rc, (name, p.returncode, p.stderr)
        assert state(target, "/f.img") == before, name
    assert target.json("fsck", target.name)["repaired"] == []


def killed_receive(target, path, stream, after, *extra):
    """A receive killed (SIGKILL) right after its Nth change to LVM."""
    env = dict(os.environ, BD_FAULT_KILL_AFTER=str(after))
    p = subprocess.run([BDCTL, "receive", target.spec(path), *extra], input=stream, env=env,
                       capture_output=True)
    assert p.returncode == -9, p


def test_a_receive_killed_after_its_commit_is_finished_by_fsck_or_the_next(bd, target):
    chunk = bd.json("export", "info", bd.name)["chunk_size"]
    bd.create("/c.img", "16M")
    write(bd, "/c.img", chunk, 0, 4, "c1")
    s1, _ = send(bd, "/c.img", "--snapshot", "c1")
    # Full stream, killed right after its commit (change 2: the temporary LV,
    # then the received snapshot): fsck makes the volume.
    killed_receive(target, "/c.img", s1, 2)
    assert "c.img" not in target.paths() and "c.img@c1" in target.paths()
    fsck = target.json("fsck", target.name)["repaired"]
    assert sorted(r["action"].split(" ")[0] for r in fsck) == ["make", "removed"], fsck
    assert same_bytes(target.device("/c.img"), bd.device("/c.img@c1"))
    # Incremental, killed after its commit (--force: no diff, so the same two
    # changes): the volume keeps its old data until the next receive gives it.
    write(bd, "/c.img", chunk, 8, 2, "c2")
    s2, _ = send(bd, "/c.img", "--snapshot", "c2", "--from", "c1")
    killed_receive(target, "/c.img", s2, 2, "--force")
    assert same_bytes(target.device("/c.img"), bd.device("/c.img@c1"))
    write(bd, "/c.img", chunk, 12, 1, "c3")
    s3, _ = send(bd, "/c.img", "--snapshot", "c3", "--from", "c2")
    got = receive(target, "/c.img", s3)
    assert same_bytes(got["volume"]["device"], bd.device("/c.img@c3"))
    assert same_bytes(target.device("/c.img@c2"), bd.device("/c.img@c2"))
    fsck = target.json("fsck", target.name)["repaired"]
    assert [r["action"].split(" ")[0] for r in fsck] == ["removed"], fsck  # the killed one's LV
    assert target.json("fsck", target.name)["repaired"] == []


@pytest.mark.long
def test_a_pending_receive_never_rolls_over_writes_made_after_it(bd, target):
    chunk = bd.json("export", "info", bd.name)["chunk_size"]
    bd.create("/w.img", "16M")
    write(bd, "/w.img", chunk, 0, 4, "w1")
    s1, _ = send(bd, "/w.img", "--snapshot", "w1")
    # A full receive killed after its volume was made (changes: the temporary
    # LV, the commit, its removal, the volume), before the pending tag went.
    killed_receive(target, "/w.img", s1, 4)
    write(target, "/w.img", chunk, 6, 1, "local1")
    local = sha_volume(target, "/w.img")
    fsck = target.json("fsck", target.name)["repaired"]
    assert [r["action"][:15] for r in fsck] == ["mark it applied"], fsck
    assert sha_volume(target, "/w.img") == local
    # An incremental receive killed after its commit; then the target is
    # written to: fsck and the next receive leave it alone, --force applies it.
    write(bd, "/w.img", chunk, 8, 2, "w2")
    s2, _ = send(bd, "/w.img", "--snapshot", "w2", "--from", "w1")
    killed_receive(target, "/w.img", s2, 2, "--force")
    write(target, "/w.img", chunk, 12, 1, "local2")
    local = sha_volume(target, "/w.img")
    fsck = target.json("fsck", target.name)["repaired"]
    assert sorted(r["action"].split(" ")[0] for r in fsck) == ["left", "removed"], fsck
    assert any("was written to since" in r["action"] and "bdctl rollback" in r["action"]
               for r in fsck), fsck
    assert sha_volume(target, "/w.img") == local
    write(bd, "/w.img", chunk, 14, 1, "w3")
    s3, _ = send(bd, "/w.img", "--snapshot", "w3", "--from", "w2")
    err = receive(target, "/w.img", s3, 9)
    assert "has not taken its data" in err, err
    assert sha_volume(target, "/w.img") == local
    got = receive(target, "/w.img", s3, 0, "--force")
    assert same_bytes(got["volume"]["device"], bd.device("/w.img@w3"))
    assert target.json("fsck", target.name)["repaired"] == []
