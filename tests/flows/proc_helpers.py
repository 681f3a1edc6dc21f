"""Helpers of the "no process outlives its parent" tests: process trees, bounded waits, free ports."""

from __future__ import annotations

import os
import signal
import socket
import time

import psutil


def tree(pid: int) -> list[psutil.Process]:
    """``pid`` and all its descendants (snapshot)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def survivors(procs: list[psutil.Process], timeout_s: float) -> list[str]:
    """Wait up to ``timeout_s`` for every process to end; describe those still running."""
    deadline = time.monotonic() + timeout_s
    left = [p for p in procs if _running(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [p for p in left if _running(p)]
    out = []
    for p in left:
        try:
            out.append(f"{p.pid}: {' '.join(p.cmdline())[:160]}")
        except psutil.Error:
            pass
    return out


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port_free(port: int, timeout_s: float) -> bool:
    """True once nothing accepts connections on 127.0.0.1:``port`` (within ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while port_in_use(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def kill_all(procs: list[psutil.Process]) -> None:
    """Clean-up after a failed assertion: SIGKILL every process (and its group) still there."""
    for p in procs:
        try:
            pgid = os.getpgid(p.pid)
            if pgid != os.getpgrp():
                os.killpg(pgid, signal.SIGKILL)
            p.kill()
        except (psutil.Error, ProcessLookupError, PermissionError):
            pass


LOOPBACK = {"127.0.0.1", "::1"}


def listening_sockets(pids: list[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every listening inet socket of ``pids`` (processes gone meanwhile are skipped)."""
    out = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            conns = proc.net_connections(kind="inet") if hasattr(proc, "net_connections") else proc.connections("inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out += [(pid, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return out
