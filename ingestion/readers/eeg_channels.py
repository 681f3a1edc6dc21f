"""EEG channel names mapped onto the standard 10-20 set.

Vendors spell the same electrode many ways (``EEG FP1-REF``, ``Fp1-LE``,
``FP1``, ``T3`` for ``T7``). Encoders need one fixed channel order, so every
recording is mapped onto :data:`ingestion.modalities.STANDARD_1020` here, and
whatever cannot be mapped is named (never silently dropped) so the manifest
says what was left out and why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ingestion.modalities import STANDARD_1020

OLD_TO_NEW: dict[str, str] = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}
"""The 1958 10-20 names renamed by the 10-10 system (ACNS 2006)."""

_STANDARD_BY_UPPER: dict[str, str] = {name.upper(): name for name in STANDARD_1020}
_STANDARD_BY_UPPER.update({old: new for old, new in OLD_TO_NEW.items()})

# Prefixes and reference suffixes that vendors glue to the electrode name.
_PREFIX = re.compile(r"^(?:EEG|EXG)[\s_:-]*", re.IGNORECASE)
_SUFFIX = re.compile(
    r"[\s_:-]*(?:REF|LE|RE|AR|AVG|AV|CAR|A1|A2|M1|M2|A1A2|M1M2|LINKED|CZ|REF\d*)$",
    re.IGNORECASE,
)

NON_EEG_TOKENS: tuple[str, ...] = (
    "EKG", "ECG", "EMG", "EOG", "ROC", "LOC", "PHOTIC", "IBI", "BURSTS", "SUPPR",
    "RESP", "SPO2", "SAO2", "PULSE", "HR", "STI", "STIM", "TRIG", "TRIGGER", "EVENT",
    "STATUS", "ANNOTATION", "DC", "OSAT", "PR", "CHIN", "LEG", "THOR", "ABD", "BP", "TEMP",
)
"""Name tokens of signals that are not scalp EEG (cardiac, ocular, stimulus, derived)."""

_NON_EEG_TYPES = frozenset({"ecg", "eog", "emg", "stim", "resp", "bio", "chpi", "syst", "gsr", "temperature"})


def standard_channel_name(name: str) -> str | None:
    """The 10-20 name of a vendor channel name, or ``None`` when it is not a 10-20 electrode.

    Strips prefixes like ``EEG `` and reference suffixes like ``-REF``, ``-LE``,
    ``-AVG`` case-insensitively and renames T3/T4/T5/T6 to T7/T8/P7/P8.
    Bipolar derivations (``FP1-F7``) are not a single electrode and give ``None``.
    """
    stripped = _PREFIX.sub("", name.strip())
    # Strip one reference suffix, but keep names that are themselves a 10-20 electrode (e.g. "Cz").
    if stripped.upper() not in _STANDARD_BY_UPPER:
        stripped = _SUFFIX.sub("", stripped)
    return _STANDARD_BY_UPPER.get(stripped.strip().upper())


def is_non_eeg(name: str, ch_type: str | None = None) -> bool:
    """True for cardiac, ocular, stimulus and derived channels (EKG, PHOTIC, IBI, BURSTS, ...)."""
    if ch_type is not None and ch_type.lower() in _NON_EEG_TYPES:
        return True
    tokens = re.split(r"[\s_:/-]+", _PREFIX.sub("", name.strip()).upper())
    return any(tok.rstrip("0123456789") in NON_EEG_TOKENS for tok in tokens if tok)


@dataclass(frozen=True)
class ChannelMap:
    """How a recording's channels map onto the 10-20 set.

    ``mapping`` goes from source name to standard name (first source wins when
    two map to the same electrode); ``non_eeg`` and ``unmapped`` are the source
    channels left out, ``missing`` the standard channels nobody supplied.
    """

    mapping: dict[str, str] = field(default_factory=dict)
    non_eeg: tuple[str, ...] = ()
    unmapped: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    @property
    def present(self) -> tuple[str, ...]:
        """Standard channels supplied by the recording, in standard order."""
        have = set(self.mapping.values())
        return tuple(name for name in STANDARD_1020 if name in have)


def map_channels(ch_names: Sequence[str], ch_types: Mapping[str, str] | None = None) -> ChannelMap:
    """Map source channel names onto :data:`STANDARD_1020`; see :class:`ChannelMap`."""
    ch_types = ch_types or {}
    mapping: dict[str, str] = {}
    non_eeg: list[str] = []
    unmapped: list[str] = []
    for name in ch_names:
        if is_non_eeg(name, ch_types.get(name)):
            non_eeg.append(name)
            continue
        std = standard_channel_name(name)
        if std is None or std in mapping.values():
            unmapped.append(name)
        else:
            mapping[name] = std
    have = set(mapping.values())
    missing = tuple(name for name in STANDARD_1020 if name not in have)
    return ChannelMap(mapping=mapping, non_eeg=tuple(non_eeg), unmapped=tuple(unmapped), missing=missing)


UNNAMED_SLOT = "Cz"
"""Row that holds a recording's single channel with no 10-20 name (see :func:`with_unnamed_slot`)."""


def with_unnamed_slot(channel_map: ChannelMap) -> tuple[ChannelMap, str | None]:
    """Give a one-channel recording with no 10-20 name the :data:`UNNAMED_SLOT` row; return it and that channel.

    Single-lead recordings (Bonn segments, sleep, ICU and ambulatory leads) often
    carry one EEG channel named ``EEG`` or ``Ch1``. With no 10-20 channel beside it
    there is nothing to confuse it with, so it is kept, in the midline Cz row: a
    row in no homologous pair, so it never fakes a hemispheric asymmetry, and
    the encoder's band powers of a one-channel recording are that channel's.
    Its location is unknown and the metadata says so (``unnamed_channel``).
    Several unnamed channels, or unnamed ones beside named ones, cannot be told
    apart or placed, so they stay ``unmapped`` (the recording may be refused).
    """
    if channel_map.mapping or len(channel_map.unmapped) != 1:
        return channel_map, None
    source = channel_map.unmapped[0]
    missing = tuple(name for name in channel_map.missing if name != UNNAMED_SLOT)
    return ChannelMap(mapping={source: UNNAMED_SLOT}, non_eeg=channel_map.non_eeg, unmapped=(),
                      missing=missing), source
