"""Run one command and measure its memory: the kernel's peak RSS of its largest process, and a guard.

Run as ``python -m tests.corpus.measure OUT.json LIMIT_BYTES -- cmd ...``: this wrapper is a fresh
process whose only child is ``cmd``, so ``RUSAGE_CHILDREN``'s ``ru_maxrss`` is the high-water mark of
the largest process in ``cmd``'s tree (its workers are reaped by it), exact rather than sampled. A
psutil thread also samples the whole tree's summed RSS and kills the tree's session when it passes
``LIMIT_BYTES``, so a regressed attack fails its test instead of taking the machine down.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time

import psutil


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def main(argv: list[str]) -> int:
    out, limit, cmd = argv[0], int(argv[1]), argv[argv.index("--") + 1:]
    started = time.perf_counter()
    child = subprocess.Popen(cmd, start_new_session=True)
    state = {"tree_peak": 0, "killed": False}

    def watch() -> None:
        proc = psutil.Process(child.pid)
        while child.poll() is None:
            try:
                rss = _tree_rss(proc)
            except psutil.Error:
                break
            state["tree_peak"] = max(state["tree_peak"], rss)
            if rss > limit:
                state["killed"] = True
                os.killpg(child.pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    rc = child.wait()
    thread.join(timeout=5)
    try:
        os.killpg(child.pid, signal.SIGKILL)  # anything the command left behind in its session
    except ProcessLookupError:
        pass
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"rc": rc, "peak_rss": peak, "tree_peak_rss": state["tree_peak"], "killed": state["killed"],
                   "elapsed_s": time.perf_counter() - started}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
