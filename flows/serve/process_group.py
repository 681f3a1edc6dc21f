"""Child processes that never outlive the command that started them.

Why: a service manager, a closing terminal or ``docker stop`` sends SIGTERM (or
SIGHUP/SIGINT) to the command it started, and an OOM killer or ``kill -9`` ends
it without any chance to clean up. Either way the servers it started (Streamlit,
Prefect server and workers, MLflow) must stop too, or they keep serving
predictions on the port with nobody owning them.

Three layers, each enough on its own for the case it covers:

1. **Orderly stop.** Every child starts in its own process group (session), so a
   signal to the group reaches the child's own children (a worker's flow-run
   processes, MLflow's gunicorn workers). :meth:`ProcessGroup.stop` sends SIGTERM
   to every group, waits up to a deadline, then SIGKILLs what is left.
   :func:`stop_on_signals` turns SIGINT/SIGTERM/SIGHUP in the parent into a
   :class:`Stop` exception so the parent's ``finally`` runs that stop.
2. **Parent killed hard, Linux.** Each child asks the kernel for SIGTERM when its
   parent dies (``prctl(PR_SET_PDEATHSIG)``, set between fork and exec).
3. **Parent killed hard, whole groups.** A small watchdog process, in a session of
   its own, holds the read end of a pipe whose write end only the parent has.
   When the parent dies for any reason the pipe reaches end-of-file and the
   watchdog SIGTERMs every registered group, waits the grace period and
   SIGKILLs the rest, then exits. It ignores SIGINT/SIGTERM/SIGHUP so a Ctrl-C or
   a service manager's stop cannot end it before the parent's own orderly stop.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stop(BaseException):
    """Raised in the parent by a stop signal; ``signum`` says which one."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when its parent dies (Linux only; a no-op elsewhere).

    The kernel ties this to the *thread* that forked: spawn from a thread that lives as long as the command.
    """
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still exists (zombies count until reaped)."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def descendants(leaders: Sequence[int]) -> list[Any]:
    """Every live descendant of these processes (psutil.Process objects, which notice pid reuse)."""
    import psutil

    out = []
    for pid in leaders:
        try:
            out.extend(psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            continue
    return out


def groups_of(leaders: Sequence[int], procs: Sequence[Any]) -> list[int]:
    """The leaders' groups and those of ``procs`` (some descendants start sessions of their own: a
    Prefect worker's flow-run supervisor does), never the caller's own group."""
    groups = list(leaders)
    for proc in procs:
        try:
            groups.append(os.getpgid(proc.pid))
        except ProcessLookupError:
            pass
    own = os.getpgrp()
    return [g for g in dict.fromkeys(groups) if g != own]


def running(proc: Any) -> bool:
    """Alive and not a zombie (an exited child nobody reaped yet has finished its work)."""
    import psutil

    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop_tree(leaders: Sequence[int], procs: Sequence[Any], grace_s: float, reap: Any = None) -> None:
    """SIGTERM the groups of ``leaders`` and ``procs``, wait up to ``grace_s`` for those processes to end,
    then SIGKILL the groups and every one of ``procs`` still running.

    The last step catches a descendant that left its group after it was listed.
    ``reap`` (called while waiting) lets the parent collect its exited children.
    """
    import psutil

    members = list(procs)
    for pid in leaders:
        try:
            members.append(psutil.Process(pid))
        except psutil.Error:
            pass
    pgids = groups_of(leaders, procs)
    for pgid in pgids:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if reap is not None:
            reap()
        if not any(running(p) for p in members):
            break
        time.sleep(0.1)
    for pgid in groups_of(pgids, procs):
        try:
            os.killpg(pgid, signal.SIGKILL)  # also whatever joined a group after the listing
        except (ProcessLookupError, PermissionError):
            pass
    for proc in members:
        try:
            if running(proc):
                proc.kill()  # psutil refuses if the pid now belongs to another process
        except Exception:  # noqa: BLE001 - gone already
            pass


def watch(grace_s: float, poll_s: float = 0.5) -> None:
    """The watchdog's loop: lines ``+PID`` / ``-PID`` on stdin register / forget a child (a group leader).

    Every ``poll_s`` it remembers the children's descendants, so one orphaned in the
    meantime (its parent stopped by the kernel's parent-death signal) is still found.
    At end-of-file (the parent is gone) it stops all of them.
    """
    import select

    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    fd = sys.stdin.fileno()
    leaders: set[int] = set()
    seen: dict[int, Any] = {}
    pending = b""
    while True:
        if select.select([fd], [], [], poll_s)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.startswith(b"+"):
                    leaders.add(int(line[1:]))
                elif line.startswith(b"-"):
                    leaders.discard(int(line[1:]))
        seen = {p.pid: p for p in [*seen.values(), *descendants(sorted(leaders))] if running(p)}
    procs = [p for p in [*seen.values(), *descendants(sorted(leaders))] if running(p)]
    live_leaders = [pid for pid in leaders if group_alive(pid)]
    if live_leaders or procs:
        stop_tree(live_leaders, procs, grace_s)


class ProcessGroup:
    """The children of one command: started with :meth:`spawn`, all stopped by :meth:`stop`."""

    def __init__(self, grace_s: float = 15.0) -> None:
        self.grace_s = grace_s
        self.children: list[subprocess.Popen] = []
        self._watchdog: subprocess.Popen | None = None

    def _ensure_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.poll() is None:
            return
        code = f"from flows.serve.process_group import watch; watch({self.grace_s!r})"
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True, text=True)

    def _tell_watchdog(self, line: str) -> None:
        try:
            assert self._watchdog is not None and self._watchdog.stdin is not None
            self._watchdog.stdin.write(line + "\n")
            self._watchdog.stdin.flush()
        except (BrokenPipeError, OSError, AssertionError):
            pass

    def spawn(self, argv: Sequence[str], die_with_thread: bool = True, **popen_kwargs: Any) -> subprocess.Popen:
        """Start ``argv`` in a new session that dies with this process; other Popen arguments pass through.

        ``die_with_thread=False`` skips the kernel's parent-death signal, which Linux ties to the
        spawning *thread*: use it when spawning from a short-lived thread (a Streamlit script run);
        the watchdog still stops the child if this process dies.
        """
        self._ensure_watchdog()
        preexec = _die_with_parent if die_with_thread else None
        proc = subprocess.Popen(list(argv), start_new_session=True, preexec_fn=preexec,  # noqa: PLW1509
                                **popen_kwargs)
        self.children.append(proc)
        self._tell_watchdog(f"+{proc.pid}")
        return proc

    def _reap(self) -> None:
        for proc in self.children:
            proc.poll()

    def stop(self, grace_s: float | None = None) -> None:
        """SIGTERM every child's group (newest first), wait up to the grace period, SIGKILL the rest."""
        leaders = [p.pid for p in reversed(self.children)]
        stop_tree(leaders, descendants(leaders), self.grace_s if grace_s is None else grace_s, reap=self._reap)
        for proc in self.children:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self._tell_watchdog(f"-{proc.pid}")
        self.children.clear()
        self.close()

    def close(self) -> None:
        """Let the watchdog go: it finds no group to stop and exits."""
        if self._watchdog is not None:
            if self._watchdog.stdin is not None:
                try:
                    self._watchdog.stdin.close()
                except OSError:
                    pass
            try:
                self._watchdog.wait(timeout=self.grace_s + 5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                self._watchdog.wait()
            self._watchdog = None

    def __enter__(self) -> "ProcessGroup":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _raise_stop(signum: int, frame: object) -> None:
    # One-shot: a second Ctrl-C while the children are being stopped must not cut that stop short
    # (it is bounded by the grace period anyway).
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise Stop(signum)


@contextmanager
def stop_on_signals(signals: Sequence[int] = STOP_SIGNALS) -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM/SIGHUP raise :class:`Stop` (previous handlers restored after)."""
    previous = {sig: signal.signal(sig, _raise_stop) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_code(stop: Stop | None, child_code: int | None) -> int:
    """The command's exit status: 0 after a requested stop, else the child's own (1 when unknown)."""
    if stop is not None:
        return 0
    return 1 if child_code is None else (child_code if child_code >= 0 else 128 - child_code)


def run_child(argv: Sequence[str], grace_s: float = 10.0, **popen_kwargs: Any) -> int:
    """Run ``argv`` as this command's own child until it exits or we are told to stop; return our exit code.

    SIGINT/SIGTERM/SIGHUP stop the child's whole process group (SIGTERM, SIGKILL after
    ``grace_s``) and give 0; the child's own exit gives its code. If this process is
    killed outright, the child is stopped by the kernel (Linux) and by the watchdog.
    """
    group = ProcessGroup(grace_s=grace_s)
    stop: Stop | None = None
    code: int | None = None
    with stop_on_signals():
        try:
            code = group.spawn(argv, **popen_kwargs).wait()
        except Stop as exc:
            stop = exc
        finally:
            group.stop()
    return exit_code(stop, code)
