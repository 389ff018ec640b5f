"""Which process wrote a run, and whether that process is still there.

A writer records its host name, pid and *process start*: on Linux the boot
id, the pid namespace and the process's start time in clock ticks, which
together tell a live process from a later one that reused its pid. Elsewhere
the start is unknown (None), and a reader relies on the pid and on the
writer's heartbeat.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import NamedTuple

__all__ = ["ProcessIdentity", "this_process", "process_is_gone"]


class ProcessIdentity(NamedTuple):
    host: str
    pid: int
    start: str | None  # "<boot id>/<pid namespace>/<start ticks>" on Linux, else None


def _read(path: str) -> str | None:
    # Bytes, decoded by the codec built into ``bytes.decode``: a text-mode open would
    # import ``encodings.ascii`` on first use, here on the writer's thread, and a
    # process forking meanwhile leaves its child that import's lock, held forever.
    try:
        with open(path, "rb") as file:
            return file.read().decode("ascii", "replace").strip()
    except OSError:
        return None


def _machine_prefix() -> str | None:
    """What a process start is only comparable within: this boot and pid namespace."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return None if boot is None else f"{boot}/{namespace}"


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot; None if there is no
    such process, or only its zombie (it has exited, its parent not yet asked)."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # the command name (field 2) may hold spaces and parentheses: count from the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]  # field 22, starttime


def _process_start(pid: int) -> str | None:
    if not sys.platform.startswith("linux"):
        return None
    prefix, ticks = _machine_prefix(), _start_ticks(pid)
    return None if prefix is None or ticks is None else f"{prefix}/{ticks}"


def this_process() -> ProcessIdentity:
    pid = os.getpid()
    return ProcessIdentity(socket.gethostname(), pid, _process_start(pid))


def process_is_gone(writer: ProcessIdentity, here: ProcessIdentity) -> bool | None:
    """True when ``writer``'s process is known to be gone (seen from ``here``),
    False when it is known to be running, None when this machine cannot tell
    (another host, another pid namespace, or no way to look)."""
    if writer.host != here.host:
        return None
    if writer.start is not None and here.start is not None:
        if writer.start.rsplit("/", 1)[0] != here.start.rsplit("/", 1)[0]:
            return None  # another boot or pid namespace: its pids mean nothing here
        return _process_start(writer.pid) != writer.start  # gone, or its pid now someone else's
    if os.name != "posix":
        return None  # os.kill(pid, 0) would end the process on Windows
    try:
        os.kill(writer.pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass  # it exists, owned by someone else
    return None  # a process has that pid: whether it is the writer, only its heartbeat tells
