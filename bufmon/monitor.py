"""One refresh: sockets of every selected namespace, their processes, system facts, flags.

Every consumer (TUI, snapshot, watch, JSON) gets its Snapshot from here.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from bufmon.acceptq import tie_to_listeners
from bufmon.diagnosis import Config, Diagnoser
from bufmon.rates import RateMeter
from collectors.checkpoint import Checkpoint, no_pause
from collectors.gcpolicy import FrozenGarbage, gc_paused
from collectors.model import Snapshot, Sock, SystemFacts
from collectors.netns import NamespaceSet, entered
from collectors.procs import ProcessIndex
from collectors.system import SystemReader
from collectors.unixdiag import link_peers

# thread-self: a thread that entered another namespace reads that one's files
PROC_NET = "/proc/thread-self/net"
FirstLook = Callable[[Snapshot], None]  # takes the sockets before processes and flags


class Monitor:
    def __init__(self, netns: str = "auto", config: Config | None = None) -> None:
        self.namespaces = NamespaceSet(netns)
        self.procs = ProcessIndex()
        self.system = SystemReader(proc_net=PROC_NET)
        self._facts_source: int | None = None  # namespace inode the facts come from
        self.diagnoser = Diagnoser(config or Config())
        self.host = socket.gethostname()
        self._gc = FrozenGarbage()
        self.rates = RateMeter()
        # called between a refresh's steps and the dump's receives; whoever runs the
        # refresh may wait there (the view: while a key's View is computed)
        self.checkpoint: Checkpoint = no_pause

    def collect(self, first_look: FirstLook | None = None, lone: bool = False) -> Snapshot:
        """Sockets, processes and system facts, without diagnosis. `first_look` gets a
        snapshot of the sockets as soon as they are read, before their processes and
        flags (a view's first screen: on a big host those take longer than the dump).
        `lone`: no sample comes after this one (so one without a sample before has no
        rates to measure nor counters to keep)."""
        now = time.time()
        checkpoint = self.checkpoint
        socks = self.namespaces.dump(checkpoint)
        checkpoint()
        if self.rates.started or not lone:
            self.rates.measure(socks, now, checkpoint)
            checkpoint()
        system = self._system_facts(now)
        if first_look is not None:
            first_look(self._snapshot(now, list(socks), system))
            checkpoint()
        self.procs.attribute(socks, self.namespaces.chosen(), checkpoint)
        checkpoint()
        tie_to_listeners(socks)
        link_peers(self.namespaces.unix)
        return self._snapshot(now, socks, system)

    def _snapshot(self, now: float, socks: list[Sock], system: SystemFacts) -> Snapshot:
        notices = list(self.namespaces.notices)
        if self.procs.notice:
            notices.append(self.procs.notice)
        return Snapshot(
            time=now,
            host=self.host,
            sockets=socks,
            system=system,
            notices=notices,
            namespaces=[ns.to_json() for ns in self.namespaces.namespaces.values()],
        )

    def _system_facts(self, now: float) -> SystemFacts:
        """Counters and sysctls of the selected namespace when only one is selected.

        With several namespaces the host's (bufmon's own) facts are shown.
        """
        ns = self.namespaces.foreign()
        source = None if ns is None else ns.inode
        if source != self._facts_source:  # deltas across two namespaces would be nonsense
            self.system = SystemReader(proc_net=PROC_NET)
            self._facts_source = source
        if ns is None:
            return self.system.read(now)
        with entered(ns.path):
            return self.system.read(now)

    def prefetch_processes(self) -> None:
        """Have the next refresh's first process scan read in a child beside its dump
        (collectors.procscan): for a one-shot command, whose scan reads every link."""
        self.procs.prefetch(self.namespaces.chosen())

    def sample_rates(self) -> None:
        """Only the counters the next refresh's rates start from (`snapshot --rates`)."""
        self.rates.measure(self.namespaces.dump(), time.time())

    def refresh(self, single_sample: bool = False, first_look: FirstLook | None = None) -> Snapshot:
        with gc_paused():  # tens of thousands of acyclic objects: no GC passes over them
            snap = self.collect(first_look, lone=single_sample)
            self.checkpoint()
            self.diagnoser.evaluate(snap, single_sample, self.checkpoint)
            self._gc.adopted()
        return snap

    def close(self) -> None:
        self.procs.close()
        self.namespaces.close()
