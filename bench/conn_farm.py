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
import ctypes
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from types import FrameType, TracebackType
from typing import Self

from collectors.netns import entered

PREFIX = "bufmon-farm-"
MAX_PAIRS_PER_CHILD = 9000  # 18,001 fds: under the 20,000 per-process limit
PR_SET_PDEATHSIG = 1


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> None:
    """Delete farm namespaces whose creating process is gone (a run killed with -9)."""
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        pid = name.removeprefix(PREFIX).split("-", 1)[0]
        if name.startswith(PREFIX) and pid.isdigit() and not _alive(int(pid)):
            subprocess.run(["ip", "netns", "del", name], check=False)


def make_netns(name: str) -> None:
    run("ip", "netns", "add", name)
    run("ip", "-n", name, "link", "set", "lo", "up")
    ports = "net.ipv4.ip_local_port_range=1024 65535"
    run("ip", "netns", "exec", name, "sysctl", "-q", "-w", ports)


def delete_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], check=False)


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
        self.netns = f"{PREFIX}{os.getpid()}"
        self.children: list[subprocess.Popen[str]] = []

    def setup(self) -> None:
        make_netns(self.netns)
        left, index = self.conns, 0
        while left > 0:
            pairs = min(left, self.pairs_per_child)
            index += 1
            cmd = ["ip", "netns", "exec", self.netns, sys.executable, __file__,
                   "--child", str(pairs), f"127.0.0.{index + 1}", str(self.unread)]  # fmt: skip
            self.children.append(subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                                  stdout=subprocess.PIPE, text=True))  # fmt: skip
            left -= pairs
        for child in self.children:  # the children connect in parallel
            assert child.stdout is not None
            line = child.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"farm child failed to start ({line or 'no output'})")

    def close(self) -> None:
        for child in self.children:
            child.kill()
        for child in self.children:
            child.wait()
        self.children.clear()
        if os.path.exists(f"/run/netns/{self.netns}"):
            delete_netns(self.netns)


class NamespaceGroup(_Owned):
    """`count` namespaces, each holding `sockets` sockets (connected pairs) of this process."""

    def __init__(self, count: int, sockets: int) -> None:
        self.names = [f"{PREFIX}{os.getpid()}-ns{i}" for i in range(count)]
        self.sockets = sockets
        self.held: list[socket.socket] = []

    def setup(self) -> None:
        for name in self.names:
            make_netns(name)
            with entered(f"/run/netns/{name}"):
                self.held += _pairs(self.sockets // 2, "127.0.0.1", 0, keep_listener=False)

    def close(self) -> None:
        for sock in self.held:
            sock.close()
        self.held.clear()
        for name in self.names:
            if os.path.exists(f"/run/netns/{name}"):
                delete_netns(name)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", type=int, default=20000, help="connections (2 sockets each)")
    parser.add_argument("--per-child", type=int, default=5000, help="connections per process")
    parser.add_argument("--unread", type=int, default=0, help="bytes left unread per connection")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # PAIRS ADDR UNREAD
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1], int(args.child[2]))
        return
    try:
        with Farm(args.conns, args.per_child, args.unread) as farm:
            print(f"{args.conns} connections in namespace {farm.netns}; Ctrl-C ends", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    except (ValueError, RuntimeError, subprocess.CalledProcessError) as exc:
        sys.exit(f"conn_farm: {exc}")


if __name__ == "__main__":
    main()
