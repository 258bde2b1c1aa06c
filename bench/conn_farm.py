"""A farm of idle loopback TCP connections in a network namespace of its own.

Each child process holds one listener on its own 127.0.0.x address plus `pairs`
connected client/server pairs (2 fds each; a process may open at most 20,000 fds).
The connections are idle; with `unread` > 0 every client first sends that many bytes
that its server side never reads (Recv-Q > 0 everywhere: 20,000 stalled readers).

    python bench/conn_farm.py --conns 20000 [--unread 100]   # hold a farm until Ctrl-C

Children die with the parent (PR_SET_PDEATHSIG); the namespace is deleted on exit,
on Ctrl-C and on SIGTERM, and stale farm namespaces of dead runs are removed first.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

from bufmon.scenarios import NETNS_DIR, Netns

PURPOSE = "farm"  # namespaces are bufmon-farm-<pid>-<n> (bufmon.scenarios.Netns)
STALE = re.compile(rf"^bufmon-{PURPOSE}-(\d+)-\d+$")
MAX_PAIRS_PER_CHILD = 9000  # 18,001 fds: under the 20,000 per-process limit
PR_SET_PDEATHSIG = 1
PORTS = ("net.ipv4.ip_local_port_range", "1024 65535")


def remove_stale() -> None:
    """Delete farm namespaces whose run is gone (killed with -9): Netns cannot know them."""
    for path in NETNS_DIR.iterdir() if NETNS_DIR.is_dir() else []:
        match = STALE.match(path.name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            subprocess.run(["ip", "netns", "del", path.name], check=False)


def farm_netns() -> Netns:
    ns = Netns(PURPOSE).open()
    try:
        ns.sysctl(*PORTS)
    except BaseException:
        ns.close()
        raise
    return ns


def _raise_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class _Owned:
    """A context manager that builds in setup() and always runs close(): on errors, on
    exit, on Ctrl-C and on SIGTERM."""

    def setup(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        signal.signal(signal.SIGTERM, _raise_on_sigterm)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignored
        remove_stale()
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


class Farm(_Owned):
    """`with Farm(20000) as farm:` -> farm.netns holds 20,000 connections (40,000 sockets)."""

    def __init__(self, conns: int, pairs_per_child: int = 5000, unread: int = 0) -> None:
        if not 0 < pairs_per_child <= MAX_PAIRS_PER_CHILD:
            raise ValueError(f"pairs per child must be 1..{MAX_PAIRS_PER_CHILD}")
        self.conns = conns
        self.pairs_per_child = pairs_per_child
        self.unread = unread
        self.ns: Netns | None = None
        self.netns = ""  # its name, once made
        self.children: list[subprocess.Popen[str]] = []

    def setup(self) -> None:
        ns = self.ns = farm_netns()
        self.netns = ns.name
        left, index = self.conns, 0
        while left > 0:
            pairs = min(left, self.pairs_per_child)
            index += 1
            cmd = ns.command(*self.command(index, pairs))
            self.children.append(subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                                  stdout=subprocess.PIPE, text=True))  # fmt: skip
            left -= pairs
        for child in self.children:  # the children connect in parallel
            assert child.stdout is not None
            line = child.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"farm child failed to start ({line or 'no output'})")

    def command(self, index: int, pairs: int) -> list[str]:
        """The command of the index-th child, holding `pairs` connections."""
        return [sys.executable, __file__, "--child", str(pairs), f"127.0.0.{index + 1}",
                str(self.unread)]  # fmt: skip

    def close(self) -> None:
        for child in self.children:
            child.kill()
        for child in self.children:
            child.wait()
        self.children.clear()
        if self.ns is not None:
            self.ns.close()


class NamespaceGroup(_Owned):
    """`count` namespaces, each holding `sockets` sockets (connected pairs) of this process."""

    def __init__(self, count: int, sockets: int) -> None:
        self.count = count
        self.sockets = sockets
        self.spaces: list[Netns] = []
        self.held: list[socket.socket] = []

    def setup(self) -> None:
        for _ in range(self.count):
            self.spaces.append(ns := farm_netns())
            self.held += ns.run(_pairs, self.sockets // 2, "127.0.0.1", 0, False)

    def close(self) -> None:
        for sock in self.held:
            sock.close()
        self.held.clear()
        for ns in self.spaces:
            ns.close()
        self.spaces.clear()


def _pairs(count: int, addr: str, unread: int, keep_listener: bool) -> list[socket.socket]:
    """`count` connected pairs to a new listener on `addr`; clients send `unread` bytes."""
    listener = socket.create_server((addr, 0), backlog=4096)
    held: list[socket.socket] = []
    for _ in range(count):
        client = socket.create_connection(listener.getsockname())
        server, _peer = listener.accept()
        if unread:
            client.sendall(b"x" * unread)
        held += (client, server)
    if keep_listener:
        held.append(listener)
    else:
        listener.close()
    return held


def child(pairs: int, addr: str, unread: int) -> None:
    """One farm process: a listener on `addr` and `pairs` connections to it, held open."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held = _pairs(pairs, addr, unread, keep_listener=True)
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes the pipe or dies
    for sock in held:
        sock.close()


def add_farm_options(parser: argparse.ArgumentParser) -> None:
    """--conns, --per-child and --unread: the farm of every benchmark that builds one."""
    parser.add_argument("--conns", type=int, default=20000, help="connections (2 sockets each)")
    parser.add_argument("--per-child", type=int, default=5000, help="connections per process")
    parser.add_argument("--unread", type=int, default=0, help="bytes left unread per connection")


def farm_of(args: argparse.Namespace) -> Farm:
    return Farm(args.conns, args.per_child, args.unread)


@contextlib.contextmanager
def announced_farm(args: argparse.Namespace, heading: str = "") -> Iterator[Farm]:
    """farm_of(args), built, with a line saying what it holds and how long it took."""
    start = time.perf_counter()
    with farm_of(args) as farm:
        print(f"{heading}{args.conns} connections ({2 * args.conns + len(farm.children)} "
              f"sockets) in {len(farm.children)} processes, {args.unread} bytes unread on "
              f"each, built in {time.perf_counter() - start:.1f} s\n", flush=True)  # fmt: skip
        yield farm


@contextlib.contextmanager
def farm_errors(bench: str) -> Iterator[None]:
    """A benchmark's Ctrl-C or failure as one line; farms and namespaces are removed on
    the way out (their own `with` blocks)."""
    try:
        yield
    except KeyboardInterrupt:
        sys.exit("interrupted; namespaces and farm processes removed")
    except (ValueError, RuntimeError, subprocess.CalledProcessError) as exc:
        sys.exit(f"{bench}: {exc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_farm_options(parser)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # PAIRS ADDR UNREAD
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1], int(args.child[2]))
        return
    with farm_errors("conn_farm"), farm_of(args) as farm:
        print(f"{args.conns} connections in namespace {farm.netns}; Ctrl-C ends", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
