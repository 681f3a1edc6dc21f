"""Live progress from a stage to whoever started the flow in this process (the CLI's Rich bars).

Progress changes nothing a stage computes, so it is not a flow parameter (a
deployment could not carry a callback anyway). The CLI installs a sink with
:func:`reporting`; a task asks :func:`callback` for the stage's callable and
hands it to the library. With no sink installed (a worker, a server run) the
callback is ``None`` and the library reports nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Sink = Callable[[str, tuple[Any, ...]], None]
"""``sink(stage, args)``: ``args`` are what the library's progress callback of that stage was called with."""

_lock = threading.Lock()
_sinks: list[Sink] = []


@contextmanager
def reporting(sink: Sink) -> Iterator[None]:
    """Send every stage's progress to ``sink`` while the block runs (tasks run in threads of this process)."""
    with _lock:
        _sinks.append(sink)
    try:
        yield
    finally:
        with _lock:
            _sinks.remove(sink)


def callback(stage: str) -> Callable[..., None] | None:
    """The progress callable to pass to the library's ``stage`` function, or None when nobody listens."""
    with _lock:
        sinks = list(_sinks)
    if not sinks:
        return None

    def report(*args: Any) -> None:
        for sink in sinks:
            sink(stage, args)

    return report
