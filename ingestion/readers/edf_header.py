"""Check an EDF/BDF header's sample counts against the file before any reader trusts them.

Why: MNE sizes its reads from the header (samples per record x channels x
records). A header of a few kilobytes can claim 100 million samples per record
per channel, tens of terabytes in all; a reader that allocates for one record
before noticing the file is short would take the machine down. The header is
plain ASCII at fixed offsets, so it is checked here with 256 + 256 x channels
bytes read, and the file is refused with what it claims and what it holds.

A header whose *record count* is wrong but whose records are sane is left to
the reader (it trusts the file size, and the data is intact).
"""

from __future__ import annotations

from pathlib import Path

from ingestion.readers.records import QuarantineError

MAX_SAMPLE_RATE_HZ = 100_000.0
"""Highest per-channel rate accepted: clinical scalp EEG is 128-2,048 Hz; research systems reach ~20 kHz."""
MAX_CHANNELS = 1024
"""Most signals one header may declare (each costs 256 header bytes)."""

_PER_SIGNAL = 16 + 80 + 8 + 8 + 8 + 8 + 8 + 80
"""Header bytes per signal before the 'samples in each data record' fields (label ... prefiltering)."""


class _Unparsed(Exception):
    """A header field is not a number: the reader will say the header is corrupt, in its own words."""


def _number(raw: bytes) -> float:
    try:
        return float(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise _Unparsed from None


def check_edf_header(path: Path) -> None:
    """Raise QuarantineError when the header's sample counts cannot describe this file (see module doc).

    A header whose fields are not numbers at all is left to the reader, which reports it as corrupt.
    """
    try:
        _check(Path(path))
    except _Unparsed:
        return


def _check(path: Path) -> None:
    bytes_per_sample = 3 if path.suffix.lower() == ".bdf" else 2
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fixed = fh.read(256)
        if len(fixed) < 256:
            return  # too short to hold a header: the reader gives its own reason
        n_signals = int(_number(fixed[252:256]))
        if not 0 < n_signals <= MAX_CHANNELS:
            raise QuarantineError(f"EEG file {path.name}: the header declares {n_signals} signals (1 to "
                                  f"{MAX_CHANNELS} accepted); the header is corrupt: re-export the recording")
        per_signal = fh.read(256 * n_signals)
    if len(per_signal) < 256 * n_signals:
        return  # a truncated header: the reader gives its own reason
    duration = _number(fixed[244:252])
    at = _PER_SIGNAL * n_signals
    samples = [int(_number(per_signal[at + 8 * i:at + 8 * i + 8]))
               for i in range(n_signals)]
    record_bytes = sum(samples) * bytes_per_sample
    data_bytes = size - 256 * (n_signals + 1)
    rate = max(samples) / duration if duration > 0 else float("inf")
    if min(samples) < 0 or record_bytes > max(data_bytes, 0) or rate > MAX_SAMPLE_RATE_HZ:
        raise QuarantineError(
            f"EEG file {path.name}: the header declares {max(samples):,} samples per {duration:g} s record in a "
            f"signal ({record_bytes / 1e6:,.1f} MB per record, {rate:,.0f} Hz) but the file holds "
            f"{max(data_bytes, 0):,} bytes of samples; the header is corrupt or hostile: re-export the recording"
        )
