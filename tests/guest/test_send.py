"""bdctl send: the stream of docs/STREAM.md, read here by an independent
reader written from that document, applied to an image file and compared
with the snapshot the send named."""
import hashlib
import json
import os
import struct
import subprocess
import threading

from conftest import BDCTL, sh


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


def test_a_send_while_a_writer_runs_carries_the_snapshot_it_names(bd, tmp_path):
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
