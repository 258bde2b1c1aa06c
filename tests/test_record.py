"""Record and replay with real sockets in namespaces the tests make: round trip against
what `watch --json` prints, crashes, torn tails, a full disk, rotation, bad files."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bufmon.diagnosis import load_config
from bufmon.filters import with_unix
from bufmon.monitor import Monitor
from bufmon.record.format import FRAME, HEAD, HEAD_CRC, VERSION
from bufmon.record.incidents import incident_line, incidents
from bufmon.record.index import ENTRY, INDEX_HEAD, index_name, read_index
from bufmon.record.reader import Recording, RecordingError
from bufmon.record.scan import Scanned, scan
from bufmon.record.writer import Recorder
from bufmon.scenarios import Churn, Netns, StalledReader, UdpDrops
from bufmon.textout import json_line, shown, watch_document
from collectors.model import Snapshot, Sock, UnixSock
from collectors.netns import entered

BUFMON = str(Path(sys.executable).with_name("bufmon"))
FAST = ["stalled_reader.hold=0.5", "stalled_reader.clear=0.5"]  # flags within a test

pytestmark = pytest.mark.root


@pytest.fixture
def ns() -> Iterator[Netns]:
    with Netns("rec") as namespace:
        yield namespace


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


class Conns(Churn):
    """Connections that come and go between frames, some with bytes left unread."""

    def churn(self, n: int) -> None:
        self.replace(n)
        self.pairs[(n + 1) % len(self.pairs)][0].send(b"x" * (100 * (n + 1)))


def watch_line(snap: Snapshot, keep: Callable[[Sock], bool] | None = None) -> str:
    return json_line(watch_document(snap, shown(snap, keep)))


def record(
    ns: Netns,
    path: Path,
    frames: int,
    step: Callable[[int], None] | None = None,
    keep: Callable[[Sock], bool] | None = None,
    **kw: int,
) -> list[str]:
    """Record `frames` refreshes of `ns` (step(n) before refresh n) of the sockets
    `keep` passes (as `bufmon record` does); returns what `watch --json` printed."""
    monitor = Monitor(ns.name, load_config(os.devnull, FAST))
    recorder = Recorder(str(path), 0.2, **kw)
    recorder.open(monitor.host)
    lines = []
    try:
        for n in range(frames):
            if step is not None:
                step(n)
            snap = monitor.refresh()
            lines.append(watch_line(snap, keep))
            recorder.write(snap, shown(snap, keep) if keep else snap.sockets)
            time.sleep(0.2)
    finally:
        recorder.close()
        monitor.close()
    return lines


def bufmon(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BUFMON, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def replay_lines(path: Path, *args: str) -> list[str]:
    out = bufmon("replay", str(path), "--json", *args)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def scanned(path: Path) -> Scanned:
    """The frames of one recording file, as a reader finds them (with its index)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return scan(fd, read_index(str(path)))
    finally:
        os.close(fd)


def frame_count(path: Path) -> int:
    return len(scanned(path).frames)


def start_recorder(path: Path, ns: Netns, *args: str) -> subprocess.Popen[str]:
    cmd = [BUFMON, "record", str(path), "--netns", ns.name, "--interval", "0.1", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_frames(path: Path, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size and frame_count(path) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} frames in {path} after {timeout} s")


# -- round trip ------------------------------------------------------------------------


def test_every_frame_equals_what_watch_json_printed(ns: Netns, tmp: Path) -> None:
    path = tmp / "night.rec"
    conns = Conns(ns, 20)
    with StalledReader(ns), UdpDrops(ns):
        try:
            printed = record(ns, path, 14, conns.churn, keyframe_every=5)
        finally:
            conns.close()
    rec = Recording.open(path)
    assert len(rec) == len(printed)
    assert list(rec.times) == [json.loads(line)["time"] for line in printed]
    for i in [*range(len(rec)), *reversed(range(len(rec)))]:  # forwards, then seeking back
        assert json_line(rec.document(i)) == printed[i], f"frame {i}"
        doc = rec.document(i)
        assert json_line(Snapshot.from_json(doc).to_json()) == printed[i]
    assert replay_lines(path) == printed  # the command prints the same lines
    kinds = {f["kind"] for line in printed for s in json.loads(line)["sockets"] for f in s["flags"]}
    assert "stalled_reader" in kinds  # real trouble was recorded, flags as raised live
    assert rec.flag_times() and rec.flag_times()[0] >= rec.times[0]
    rec.close()


def test_a_full_unix_backlog_round_trips_with_its_own_fields(ns: Netns, tmp: Path) -> None:
    """A UNIX listener nobody accepts from: recorded as the view shows it (UNIX sockets
    only while flagged), every frame as `watch --json` printed it, the flag an incident."""
    path, where = tmp / "unix.rec", str(tmp / "api.sock")
    with entered(f"/run/netns/{ns.name}"):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(where)
    listener.listen(2)
    clients: list[socket.socket] = []

    def step(n: int) -> None:
        if n < 3:  # fills the backlog: 2 + 1 connections wait
            with entered(f"/run/netns/{ns.name}"):
                clients.append(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            clients[-1].connect(where)
        elif n == 12:  # one accepted: the listener's row changes in a delta
            listener.accept()[0].close()

    try:
        printed = record(ns, path, 16, step, keep=with_unix(""), keyframe_every=6)
    finally:
        for s in [listener, *clients]:
            s.close()
    docs = [json.loads(line) for line in printed]
    recorded = [[s for s in d["sockets"] if s["proto"] == "unix"] for d in docs]
    assert not recorded[0], "an unflagged UNIX socket is not recorded"
    held = [s for socks in recorded for s in socks]
    assert held and all(s["path"] == where and s["type"] == "stream" for s in held)
    assert {s["recv_q"] for s in held} >= {3, 2}  # the row changed while recorded
    assert {f["kind"] for s in held for f in s["flags"]} == {"accept_queue_full"}
    rec = Recording.open(path)
    for i in range(len(rec)):
        assert json_line(rec.document(i)) == printed[i], f"frame {i}"
        assert json_line(Snapshot.from_json(rec.document(i)).to_json()) == printed[i]
    assert any(isinstance(s, UnixSock) for s in rec.snapshot(len(rec) - 1).sockets)
    assert replay_lines(path) == printed  # the command's default filter is the view's
    rec.close()
    out = bufmon("replay", str(path), "--incidents")
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if "accept_queue_full" in line)
    assert where in line


def test_replay_filter_and_time_range(ns: Netns, tmp: Path) -> None:
    path = tmp / "r.rec"
    with StalledReader(ns), UdpDrops(ns):
        printed = record(ns, path, 6)
    udp = replay_lines(path, "proto:udp")
    assert len(udp) == 6
    assert all(s["proto"] == "udp" for line in udp for s in json.loads(line)["sockets"])
    assert any(json.loads(line)["sockets"] for line in udp)
    times = [json.loads(line)["time"] for line in printed]
    last_two = replay_lines(path, "--from", f"-{times[-1] - times[-2] + 0.01:.2f}s")
    assert last_two == printed[-2:]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(times[-1] + 1))
    assert replay_lines(path, "--to", stamp) == printed
    bad = bufmon("replay", str(path), "--json", "--from", "yesterday-ish")
    assert bad.returncode == 2
    assert bad.stderr.startswith("bufmon: --from: not a time") and not bad.stdout


def test_incidents_list_the_stalled_reader(ns: Netns, tmp: Path) -> None:
    path = tmp / "inc.rec"
    with StalledReader(ns):
        record(ns, path, 8)
    rec = Recording.open(path)
    found = [i for i in incidents(rec) if i.kind == "stalled_reader"]
    assert found, [incident_line(i) for i in incidents(rec)]
    inc = found[0]
    assert inc.severity in ("warning", "critical") and inc.rose >= rec.times[0]
    assert inc.cleared is None  # still stalled when the recording ended
    out = bufmon("replay", str(path), "--incidents")
    assert out.returncode == 0
    line = next(line for line in out.stdout.splitlines() if "stalled_reader" in line)
    assert "still raised" in line and "Recv-Q" in line and inc.socket in line
    rec.close()


# -- crashes and the disk --------------------------------------------------------------


def test_kill_9_then_torn_tail_then_restart(ns: Netns, tmp: Path) -> None:
    path = tmp / "crash.rec"
    conns = Conns(ns, 30)
    try:
        proc = start_recorder(path, ns)
        wait_frames(path, 8)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        complete = frame_count(path)
        assert complete >= 8
        assert len(replay_lines(path)) == complete  # every complete frame reads back
        # a torn last frame (cut in the middle) costs that frame only
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size - 7)
        assert len(replay_lines(path)) == complete - 1
        # restarted on the same file: appends after the last good frame
        proc = start_recorder(path, ns, "--duration", "0.5")
        assert proc.wait(timeout=30) == 0
        after = replay_lines(path)
        assert len(after) > complete - 1
        times = [json.loads(line)["time"] for line in after]
        assert times == sorted(times)
    finally:
        conns.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_ctrl_c_sigterm_and_hangup_end_cleanly(ns: Netns, tmp: Path, signum: int) -> None:
    path = tmp / "sig.rec"
    proc = start_recorder(path, ns)
    wait_frames(path, 3)
    proc.send_signal(signum)
    assert proc.wait(timeout=10) == 0
    assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
    assert len(replay_lines(path)) == frame_count(path) >= 3
    # nothing torn: the file ends where its last frame ends
    fd = os.open(path, os.O_RDONLY)
    try:
        assert scan(fd).end == path.stat().st_size
    finally:
        os.close(fd)


def test_under_nohup_a_hangup_does_not_stop_the_recording(ns: Netns, tmp: Path) -> None:
    path = tmp / "nohup.rec"
    proc = subprocess.Popen(
        ["nohup", BUFMON, "record", str(path), "--netns", ns.name, "--interval", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_frames(path, 2)
        proc.send_signal(signal.SIGHUP)
        before = frame_count(path)
        wait_frames(path, before + 3)  # still recording
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert len(replay_lines(path)) == frame_count(path)


def test_full_disk_stops_with_one_line_and_keeps_what_was_written(ns: Netns, tmp: Path) -> None:
    mnt = tmp / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mnt)], check=True)
    conns = Conns(ns, 100)
    try:
        path = mnt / "full.rec"
        proc = start_recorder(path, ns, "--interval", "0.02")
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1
        assert err.strip().splitlines()[-1].startswith(f"bufmon: {path}: disk full")
        assert "Traceback" not in err
        lines = replay_lines(path)
        assert len(lines) == frame_count(path) >= 2
    finally:
        conns.close()
        subprocess.run(["umount", str(mnt)], check=True)


def test_file_removed_under_the_recorder(ns: Netns, tmp: Path) -> None:
    path = tmp / "gone.rec"
    proc = start_recorder(path, ns)
    wait_frames(path, 2)
    kept = tmp / "kept.rec"
    os.link(path, kept)  # what was written stays readable through another name
    path.unlink()
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1] == (
        f"bufmon: {path}: the file was removed or replaced; recording stopped after "
        + err.strip().rsplit("after ", 1)[1]
    )
    assert len(replay_lines(kept)) >= 2


def test_rotation_bounds_files_and_replays_as_one_timeline(ns: Netns, tmp: Path) -> None:
    path = tmp / "rot.rec"
    conns = Conns(ns, 150)
    try:
        proc = start_recorder(path, ns, "--interval", "0.02", "--max-size", "64K", "--keep", "2")
        deadline = time.monotonic() + 60
        step = 0
        while not (tmp / "rot.rec.2").exists() and time.monotonic() < deadline:
            conns.churn(step % 100)  # bounded: at most 10 kB a send
            step += 1
            time.sleep(0.05)
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        conns.close()
    parts = [path, tmp / "rot.rec.1", tmp / "rot.rec.2"]
    assert all(p.exists() and p.stat().st_size <= 64 * 1024 for p in parts)
    assert not (tmp / "rot.rec.3").exists()
    lines = replay_lines(path)
    assert len(lines) == sum(frame_count(p) for p in parts)
    assert all(scanned(p).indexed == frame_count(p) for p in parts)  # indexes moved along
    times = [json.loads(line)["time"] for line in lines]
    assert times == sorted(times)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in parts)


# -- files --------------------------------------------------------------------------


def test_the_index_is_a_checked_cache(ns: Netns, tmp: Path) -> None:
    """Behind, foreign, garbage or ahead of a torn tail: every complete frame reads back;
    a recorder restarted on the file rewrites an index that is behind."""
    path, index = tmp / "i.rec", Path(index_name(str(tmp / "i.rec")))
    printed = record(ns, path, 6)
    assert index.stat().st_mode & 0o777 == 0o600
    whole = index.read_bytes()
    assert scanned(path).indexed == len(scanned(path).frames) == 6
    index.write_bytes(whole[: INDEX_HEAD.size + 2 * ENTRY.size + 5])  # behind, torn entry
    assert (scanned(path).indexed, frame_count(path)) == (2, 6)
    assert replay_lines(path) == printed
    record(ns, tmp / "other.rec", 1)
    index.write_bytes(Path(index_name(str(tmp / "other.rec"))).read_bytes())  # foreign
    assert (scanned(path).indexed, frame_count(path)) == (0, 6)
    index.write_bytes(whole[: INDEX_HEAD.size] + bytes(reversed(whole[INDEX_HEAD.size :])))
    assert (scanned(path).indexed, frame_count(path)) == (0, 6)  # garbage entries
    index.write_bytes(whole)
    with open(path, "r+b") as f:  # the index lists a frame the file lost the end of
        f.truncate(path.stat().st_size - 3)
    assert (scanned(path).indexed, frame_count(path)) == (5, 5)
    assert replay_lines(path) == printed[:5]
    appended = record(ns, path, 2)
    assert scanned(path).indexed == frame_count(path) == 7
    assert index.stat().st_size == INDEX_HEAD.size + 7 * ENTRY.size
    assert replay_lines(path) == printed[:5] + appended


def test_file_is_0600_and_a_planted_symlink_is_not_followed(ns: Netns, tmp: Path) -> None:
    old = os.umask(0)
    try:
        out = bufmon("record", str(tmp / "new.rec"), "--netns", ns.name, "--duration", "0.3")
    finally:
        os.umask(old)
    assert out.returncode == 0, out.stderr
    assert (tmp / "new.rec").stat().st_mode & 0o777 == 0o600
    target = tmp / "victim"
    target.write_text("precious\n")
    (tmp / "link.rec").symlink_to(target)
    out = bufmon("record", str(tmp / "link.rec"), "--netns", ns.name, "--duration", "0.3")
    assert out.returncode == 2
    assert out.stderr == f"bufmon: {tmp / 'link.rec'}: is a symbolic link; refusing to follow it\n"
    assert target.read_text() == "precious\n"


def _sections(path: Path) -> bytes:
    """Every frame's sections, decompressed."""
    data = path.read_bytes()
    fd = os.open(path, os.O_RDONLY)
    try:
        found = scan(fd)
    finally:
        os.close(fd)
    out = b""
    for i, offset in enumerate(found.frames.offsets):
        *_, meta_len, blob_len, _ = FRAME.unpack_from(data, offset)
        body = data[offset + FRAME.size : found.frame_end(i)]
        out += zlib.decompress(body[:meta_len])
        if blob_len:
            out += zlib.decompress(body[meta_len:])
    return out


def test_no_command_lines_are_recorded(ns: Netns, tmp: Path) -> None:
    secret = "--password=hunter2-do-not-record"
    owner = subprocess.Popen(
        ns.command(
            sys.executable,
            "-c",
            "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen();"
            " time.sleep(30)",
            secret,
        )
    )
    try:
        time.sleep(0.5)
        path = tmp / "argv.rec"
        out = bufmon("record", str(path), "--netns", ns.name, "--duration", "0.5")
        assert out.returncode == 0, out.stderr
    finally:
        owner.kill()
        owner.wait()
    lines = replay_lines(path)
    assert any(s["process"] for line in lines for s in json.loads(line)["sockets"])
    assert b"hunter2" not in path.read_bytes() and b"hunter2" not in _sections(path)


def _a_recording(ns: Netns, path: Path) -> bytes:
    record(ns, path, 2)
    return path.read_bytes()


@pytest.mark.parametrize("case", ["garbage", "empty", "truncated header", "newer version"])
def test_bad_files_get_one_line_and_exit_2(ns: Netns, tmp: Path, case: str) -> None:
    good = _a_recording(ns, tmp / "good.rec")
    path = tmp / "bad.rec"
    if case == "garbage":
        path.write_bytes(b"GET / HTTP/1.1\r\n" * 20)
        want = "not a bufmon recording"
    elif case == "empty":
        path.write_bytes(b"")
        want = "empty file, not a bufmon recording"
    elif case == "truncated header":
        path.write_bytes(good[: HEAD.size + 5])
        want = "truncated recording header"
    else:
        head = bytearray(good)
        struct.pack_into("<H", head, 8, VERSION + 1)
        end = HEAD.size + struct.unpack_from("<I", head, 12)[0]
        struct.pack_into("<I", head, end, zlib.crc32(bytes(head[:end])))
        assert HEAD_CRC.size == 4
        path.write_bytes(bytes(head))
        want = f"recording format version {VERSION + 1} is newer than this bufmon reads ({VERSION})"
    for args in (["--json"], ["--incidents"], []):
        out = bufmon("replay", str(path), *args)
        assert out.returncode == 2
        assert out.stderr == f"bufmon: {path}: {want}\n" and not out.stdout
    with pytest.raises(RecordingError):
        Recording.open(path)
    if case != "empty":  # an empty file is a recording not started yet: appended to
        out = bufmon("record", str(path), "--netns", ns.name, "--duration", "0.3")
        assert out.returncode == 2 and "refusing to append" in out.stderr


def test_missing_file(tmp: Path) -> None:
    out = bufmon("replay", str(tmp / "none.rec"))
    assert out.returncode == 2 and out.stderr == f"bufmon: {tmp / 'none.rec'}: no such file\n"


def test_the_documented_reader_needs_no_bufmon(ns: Netns, tmp: Path) -> None:
    """The standard-library reader in docs/recording-format.md reads every frame."""
    path = tmp / "doc.rec"
    record(ns, path, 4)
    doc = (Path(__file__).resolve().parent.parent / "docs" / "recording-format.md").read_text()
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    code = code.split("for kind, t, meta, infos in frames(")[0]  # the function only
    scope: dict[str, object] = {}
    exec(compile(code, "recording-format.md", "exec"), scope)
    frames = list(scope["frames"](str(path)))  # type: ignore[operator]
    assert [f[0] for f in frames] == ["K", "D", "D", "D"]
    assert [f[1] for f in frames] == list(Recording.open(path).times)
    assert len(frames[0][2]["sockets"]) == len(json.loads(replay_lines(path)[0])["sockets"])


def test_a_stalled_socket_that_closes_round_trips_and_its_incident_clears(
    ns: Netns, tmp: Path
) -> None:
    path = tmp / "closed.rec"
    scenario = StalledReader(ns)
    scenario.__enter__()

    def close_at_6(n: int) -> None:
        if n == 6:
            scenario.close()  # the stalled pair goes away

    try:
        printed = record(ns, path, 12, close_at_6, keyframe_every=100)
    finally:
        scenario.close()
    closed = [json.loads(line) for line in printed[7:]]
    assert any(s["closed"] and s["flags"] for doc in closed for s in doc["sockets"])
    rec = Recording.open(path)
    assert [json_line(rec.document(i)) for i in range(len(rec))] == printed
    stalled = [i for i in incidents(rec) if i.kind == "stalled_reader"]
    assert stalled and stalled[0].cleared is not None
    assert rec.times[5] < stalled[0].cleared <= rec.times[7]
    rec.close()
