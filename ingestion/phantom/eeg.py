"""Phantom scalp EEG: one EDF recording per patient with focal slowing on the LEFT or RIGHT hemisphere.

What a reader must cope with, as in real exports: vendor-style channel names
that vary per file (``EEG FP1-REF``, ``FP1``, ``Fp1-LE``, old T3/T4/T5/T6
names), channel order that varies, an extra ECG channel in some files,
sampling rates of 250/256/500 Hz, 50 Hz line noise, eye blinks, muscle
bursts, electrode pops and epileptiform spikes. The disease signal is delta
(0.5-4 Hz) power raised on one hemisphere by a gain that rises monotonically
with the EEG evidence of the latent model; its side enters the label only
through the CT x EEG concordance. The EDF+ header carries the MRN as patient
code, a fake name and birth date (planted PHI).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from edfio import Edf, EdfSignal, Patient, Recording

from ingestion.modalities import STANDARD_1020
from ingestion.phantom.phi import FakeIdentity, PlantedItem, random_token

LEFT = ("Fp1", "F7", "F3", "T7", "C3", "P7", "P3", "O1")
RIGHT = ("Fp2", "F8", "F4", "T8", "C4", "P8", "P4", "O2")
OLD_NAMES = {"T7": "T3", "T8": "T4", "P7": "T5", "P8": "T6"}
NAME_STYLES = ("tuh", "upper", "linked_ears", "plain", "eeg_prefix")
SAMPLING_RATES = (250.0, 256.0, 500.0)
LINE_FREQ = 50.0
MIN_SECONDS = 4
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def edf_date(day: dt.date) -> str:
    """A date as EDF+ writes it in the header (``03-MAY-1956``)."""
    return f"{day.day:02d}-{_MONTHS[day.month - 1]}-{day.year}"


def vendor_label(name: str, style: str, old_names: bool) -> str:
    """The label a given vendor style writes for a standard 10-20 channel name."""
    name = OLD_NAMES.get(name, name) if old_names else name
    return {
        "tuh": f"EEG {name.upper()}-REF",
        "upper": name.upper(),
        "linked_ears": f"{name}-LE",
        "plain": name,
        "eeg_prefix": f"EEG {name}",
    }[style]


def slowing_gain(evidence: float) -> float:
    """Delta amplitude gain on the focal hemisphere: softplus of the evidence, > 1.4 so the side shows."""
    return 1.4 + 0.5 * float(np.logaddexp(0.0, evidence))


def _spectral_background(rng: np.random.Generator, n: int, sfreq: float, side: str, evidence: float) -> np.ndarray:
    """``(19, n)`` microvolts: 1/f background plus posterior alpha, delta boosted on the focal side."""
    freqs = np.fft.rfftfreq(n, 1.0 / sfreq)
    background = 1.0 / np.sqrt(1.0 + (freqs / 1.5) ** 1.8)
    alpha_f = rng.uniform(9.0, 11.0)
    alpha = np.exp(-0.5 * ((freqs - alpha_f) / 1.0) ** 2)
    delta = ((freqs >= 0.5) & (freqs <= 4.0)).astype(float)
    posterior = np.array([1.0 if ch[0] in "PO" else 0.3 for ch in STANDARD_1020])
    amp = background[None, :] + (0.9 * posterior)[:, None] * alpha[None, :]
    amp[:, 0] = 0.0  # no DC offset
    scale = rng.uniform(12.0, 22.0) / np.sqrt(2.0 * np.sum(amp**2, axis=1) / n)
    focal = np.array([ch in (LEFT if side == "L" else RIGHT) for ch in STANDARD_1020], float)
    gain = 1.0 + (slowing_gain(evidence) - 1.0) * focal
    amp = amp * (1.0 + (gain[:, None] - 1.0) * delta[None, :]) * scale[:, None]
    white = np.fft.rfft(rng.standard_normal((len(STANDARD_1020), n)), axis=1)
    return np.fft.irfft(white * amp, n=n, axis=1)


def _add_events(rng: np.random.Generator, data: np.ndarray, sfreq: float, side: str) -> None:
    """Spikes on the focal side, line noise, eye blinks, muscle bursts and an electrode pop (in place)."""
    n = data.shape[1]
    t = np.arange(n) / sfreq
    index = {ch: i for i, ch in enumerate(STANDARD_1020)}
    focal = [index[ch] for ch in (LEFT if side == "L" else RIGHT)]
    for _ in range(int(rng.poisson(2 + t[-1] / 30))):  # spike-and-wave discharges
        c = rng.uniform(0.5, t[-1] - 0.5)
        shape = -np.exp(-0.5 * ((t - c) / 0.015) ** 2) + 0.35 * np.exp(-0.5 * ((t - c - 0.15) / 0.06) ** 2)
        for i in focal:
            data[i] += rng.uniform(30, 90) * shape
    phase = rng.uniform(0, 2 * np.pi, (data.shape[0], 1))
    data += rng.uniform(2.0, 10.0) * np.sin(2 * np.pi * LINE_FREQ * t[None, :] + phase)
    blink = np.zeros(n)
    for c in rng.uniform(0.3, t[-1] - 0.3, int(t[-1] / rng.uniform(3, 8))):
        blink += rng.uniform(80, 160) * np.exp(-0.5 * ((t - c) / 0.08) ** 2)
    for ch, w in (("Fp1", 1.0), ("Fp2", 1.0), ("F7", 0.4), ("F8", 0.4), ("F3", 0.3), ("F4", 0.3)):
        data[index[ch]] += w * blink
    for _ in range(int(rng.integers(1, 4))):  # muscle bursts on a temporal channel
        length = int(rng.uniform(0.5, 2.0) * sfreq)
        start = int(rng.integers(0, n - length))
        burst = rng.standard_normal(length) * rng.uniform(15, 40)
        data[index[str(rng.choice(["T7", "T8", "F7", "F8"]))], start:start + length] += burst - burst.mean()
    i, start = int(rng.integers(len(STANDARD_1020))), int(rng.integers(0, n - int(sfreq)))
    data[i, start:] += rng.uniform(100, 300) * np.exp(-(t[start:] - t[start]) / 0.3)


def _ecg(rng: np.random.Generator, n: int, sfreq: float) -> np.ndarray:
    """A crude ECG (QRS spikes at 55-95 bpm), as found on a polygraphic channel of clinical EEG."""
    t = np.arange(n) / sfreq
    beats = np.arange(rng.uniform(0, 1), t[-1], 60.0 / rng.uniform(55, 95))
    ecg = np.zeros(n)
    for b in beats:
        ecg += 900 * np.exp(-0.5 * ((t - b) / 0.012) ** 2) - 150 * np.exp(-0.5 * ((t - b - 0.03) / 0.02) ** 2)
    return ecg


def write_eeg(eeg_root: Path, rng: np.random.Generator, identity: FakeIdentity, evidence: float, side: str,
              seconds: tuple[int, int] = (60, 120)) -> PlantedItem:
    """Write one EDF+ recording of ``seconds`` (inclusive range, at least 4 s) with focal slowing on ``side``."""
    if seconds[0] < MIN_SECONDS or seconds[1] < seconds[0]:
        raise ValueError(f"EEG duration range must be (min, max) with {MIN_SECONDS} <= min <= max, got {seconds}")
    sfreq = float(rng.choice(SAMPLING_RATES))
    duration = int(rng.integers(seconds[0], seconds[1] + 1))
    n = int(sfreq * duration)
    style = str(rng.choice(NAME_STYLES))
    old_names = style == "tuh" or bool(rng.random() < 0.4)
    data = _spectral_background(rng, n, sfreq, side, evidence)
    _add_events(rng, data, sfreq, side)
    phys = float(rng.choice([1000.0, 3200.0]))
    signals = [EdfSignal(np.clip(data[i], -phys, phys), sfreq, label=vendor_label(ch, style, old_names),
                         transducer_type="AgAgCl electrode", physical_dimension="uV",
                         physical_range=(-phys, phys), prefiltering="HP:0.1Hz LP:100Hz")
               for i, ch in enumerate(STANDARD_1020)]
    if rng.random() < 0.5:  # vendors differ in channel order
        signals = [signals[i] for i in rng.permutation(len(signals))]
    if rng.random() < 0.3:
        label = "EKG1-REF" if style == "tuh" else "ECG"
        signals.append(EdfSignal(np.clip(_ecg(rng, n, sfreq), -3000, 3000), sfreq, label=label,
                                 physical_dimension="uV", physical_range=(-3000.0, 3000.0)))
    edf_name = f"{identity.first_name}_{identity.last_name}"
    accession = f"EEG{identity.visit_date:%y}-{int(rng.integers(0, 10**5)):05d}"
    edf = Edf(
        signals,
        patient=Patient(code=identity.mrn, sex=identity.sex, birthdate=identity.birth_date, name=edf_name),
        recording=Recording(startdate=identity.visit_date, hospital_administration_code=accession,
                            investigator_technician_code=identity.physician_last,
                            equipment_code=str(rng.choice(["NK-EEG1200", "XLTEK32", "Natus_Quantum"]))),
        starttime=dt.time(int(rng.integers(7, 19)), int(rng.integers(0, 60)), int(rng.integers(0, 60))),
        data_record_duration=1.0,
    )
    path = eeg_root / f"{random_token(rng)}.edf"
    path.parent.mkdir(parents=True, exist_ok=True)
    edf.write(path)
    planted = (identity.mrn, edf_name, edf_date(identity.birth_date), accession, edf_date(identity.visit_date))
    return PlantedItem("eeg", (path,), planted)
