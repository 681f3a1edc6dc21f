"""A site's own pretrained encoder weights: read, check against the architecture, load, install, export.

Why: a hospital that pretrained the CT, X-ray or EEG network on its own archive
wants clinfuse to use those weights instead of the seeded initialisation or
``clinfuse pretrain``'s. Three rules make that safe:

* **Offline, plain tensors only.** A local file or folder is read; nothing is
  downloaded. ``.pt``/``.pth``/``.bin`` go through ``torch.load(weights_only=True)``
  (no pickled code runs); ``.safetensors`` through the ``safetensors`` package.
  A folder is a MONAI bundle (``models/model.pt``) or a Hugging Face style
  folder saved locally (``model.safetensors`` / ``pytorch_model.bin``).
* **Strict architecture check.** Every key and shape of the encoder's network
  must be in the file and nothing else; a mismatch is refused with the first
  differing keys and shapes and the architecture clinfuse expected (its version,
  encoder name, network class and config), before anything is written.
* **Their checksum is in the encoder version.** The sha256 of the weights file
  enters :attr:`TorchEncoder.version` (``site_sha256``), so embeddings made with
  site weights never share a store key with the project's own, even where the
  numbers happen to be equal (a round trip of the project's exported weights).

ONNX: only the note encoder runs through ONNX Runtime, from a model clinfuse
derives itself from the packaged MiniLM (``note_onnx``); the CT, X-ray and EEG
networks have no ONNX path and the note encoder takes no site weights, so
``.onnx`` files are refused with that reason.

:func:`install_site_weights` converts checked site weights into the project's
own weights format in ``encoders_dir`` (``<name>-<version>.pt``, recording the
sha256), where every stage finds them as the newest weights of that encoder and
a model trained on them can find them again by version.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from ingestion.atomic_files import atomic_write_bytes
from ingestion.modalities import MODALITIES

if TYPE_CHECKING:  # torch is imported where weights are read: the CLI's checks and digests run without it
    import torch

    from models.encoders.base import TorchEncoder

SITE_MODALITIES = tuple(m for m in MODALITIES if m != "note")
"""Modalities whose encoder is a trainable torch network that can take a site's weights (all but notes)."""
FOLDER_FILES = ("models/model.pt", "models/model.safetensors", "model.safetensors", "pytorch_model.bin",
                "model.pt")
"""Where a weights folder keeps its state dict, first match wins: MONAI bundle, then Hugging Face layouts."""
_SHOW = 5
"""How many mismatched keys an error names."""


class SiteWeightsError(ValueError):
    """Site weights that cannot be used; the message says why and what clinfuse expected."""


@dataclass(frozen=True)
class SiteWeights:
    """Where a site's weights were read from, how, and their checksum."""

    source: Path
    file: Path
    format: str
    sha256: str


def parse_assignments(pairs: Iterable[str]) -> dict[str, Path]:
    """``["ct=/site/ct.pt", "xray=/site/bundle"]`` -> ``{"ct": Path(...), ...}``; a malformed pair is an error."""
    out: dict[str, Path] = {}
    for pair in pairs:
        modality, sep, path = str(pair).partition("=")
        if not sep or not modality.strip() or not path.strip():
            raise SiteWeightsError(f"{pair!r}: expected MODALITY=PATH, e.g. ct=/site/weights/ct.pt")
        out[modality.strip().lower()] = Path(path.strip()).expanduser()
    return out


def check_modality(modality: str) -> None:
    """Refuse a modality that cannot take site weights, with the reason."""
    if modality == "note":
        raise SiteWeightsError("the note encoder takes no site weights: it is the packaged MiniLM (run through "
                               "ONNX Runtime from a model clinfuse derives itself) or a TF-IDF fitted on the "
                               f"training notes; site weights are for {', '.join(SITE_MODALITIES)}")
    if modality not in SITE_MODALITIES:
        raise SiteWeightsError(f"unknown modality {modality!r} for site weights; expected one of "
                               f"{', '.join(SITE_MODALITIES)}")


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_file(source: Path) -> tuple[Path, str]:
    """The file holding the state dict of ``source`` (a file, or a bundle/model folder) and its format."""
    source = Path(source)
    if source.is_dir():
        for rel in FOLDER_FILES:
            if (source / rel).is_file():
                kind = "monai-bundle" if rel.startswith("models/") else "folder"
                return source / rel, f"{kind}:{Path(rel).suffix.lstrip('.')}"
        raise SiteWeightsError(f"{source} is a folder without weights: expected one of {', '.join(FOLDER_FILES)} "
                               "(a MONAI bundle keeps models/model.pt)")
    if not source.is_file():
        raise SiteWeightsError(f"{source}: no such weights file or folder")
    suffix = source.suffix.lower()
    if suffix in (".pt", ".pth", ".bin"):
        return source, "torch"
    if suffix == ".safetensors":
        return source, "safetensors"
    if suffix == ".onnx":
        raise SiteWeightsError(f"{source}: ONNX weights are not supported: the CT, X-ray and EEG encoders run "
                               "in torch (give a state dict .pt or .safetensors), and the note encoder's ONNX "
                               "model is derived by clinfuse from the packaged MiniLM")
    raise SiteWeightsError(f"{source}: unknown weights format {suffix or '(no suffix)'}; expected .pt, .pth, "
                           ".bin, .safetensors or a MONAI bundle folder")


def read_state_dict(path: Path, fmt: str) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (never runs pickled code); a project weights blob gives its state dict."""
    if fmt.endswith("safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError as exc:  # optional: torch files need nothing more
            raise SiteWeightsError(f"{path}: reading .safetensors needs the 'safetensors' package") from exc
        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:  # noqa: BLE001 - any parse failure is the same answer to the user
            raise SiteWeightsError(f"{path}: not a readable safetensors file ({exc})") from exc
    import torch

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling refused or a damaged file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SiteWeightsError(f"{path}: not a plain torch state dict (read with weights_only=True, so no "
                               f"pickled code runs): {first}") from exc
    if isinstance(blob, Mapping) and isinstance(blob.get("state_dict"), Mapping):
        blob = blob["state_dict"]  # clinfuse's own weights file, or a training checkpoint
    if not isinstance(blob, Mapping) or not blob:
        raise SiteWeightsError(f"{path}: expected a state dict (a mapping of parameter names to tensors), "
                               f"found {type(blob).__name__}")
    bad = [str(k) for k, v in blob.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise SiteWeightsError(f"{path}: entries that are not tensors: {', '.join(bad[:_SHOW])}")
    return {str(k): v for k, v in blob.items()}


def expected_architecture(encoder: TorchEncoder) -> str:
    """What the file had to match, in words: clinfuse version, encoder name, network class and config."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        clinfuse = version("clinfuse")
    except PackageNotFoundError:
        clinfuse = "unknown"
    config = asdict(encoder.config)
    return (f"clinfuse {clinfuse} {encoder.modality} encoder {encoder.name} "
            f"({type(encoder.net).__name__}, config {config})")


def architecture_mismatch(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor]) -> list[str]:
    """Human-readable differences: missing keys, unexpected keys, shape mismatches (first few of each)."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [f"{k}: file {tuple(got[k].shape)}, expected {tuple(v.shape)}"
              for k, v in expected.items() if k in got and tuple(got[k].shape) != tuple(v.shape)]
    out = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
            out.append(f"{len(items)} {label}: {'; '.join(items[:_SHOW])}{more}")
    return out


def _torch_module() -> type:
    from torch import nn

    return nn.Module


def load_site_weights(encoder: TorchEncoder, source: Path) -> SiteWeights:
    """Load a site's weights into ``encoder`` after the strict check; its version then carries their sha256.

    Raises :class:`SiteWeightsError` (the encoder unchanged) when the file is
    missing, unreadable or made for another architecture.
    """
    check_modality(encoder.modality)
    if not isinstance(getattr(encoder, "net", None), _torch_module()):
        raise SiteWeightsError(f"the {encoder.modality} encoder {encoder.name} has no torch network to take weights")
    path, fmt = weights_file(Path(source))
    state = read_state_dict(path, fmt)
    expected = encoder.net.state_dict()
    problems = architecture_mismatch(expected, state)
    if problems:
        raise SiteWeightsError(f"{source} does not fit the expected architecture, the "
                               f"{expected_architecture(encoder)}: " + " | ".join(problems))
    sha = file_sha256(path)
    encoder.net.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    encoder.site_sha256 = sha
    encoder.weights_changed()
    encoder.weights_path = path
    return SiteWeights(Path(source), path, fmt, sha)


def install_site_weights(encoder: TorchEncoder, source: Path, encoders_dir: Path) -> tuple[Path, SiteWeights]:
    """Load checked site weights and keep them in ``encoders_dir`` as the encoder's newest weights.

    Written once per version (``<name>-<version>.pt``, clinfuse's own format with the
    sha256 recorded); when that file exists but other weights of the encoder are
    newer, its modification time is renewed so the configured weights are the ones
    used. Installing the same weights again changes nothing on disk.
    """
    from models.encoders.base import saved_weights

    record = load_site_weights(encoder, source)
    target = Path(encoders_dir) / f"{encoder.name}-{encoder.version}.pt"
    if not target.is_file():
        Path(encoders_dir).mkdir(parents=True, exist_ok=True)
        written = encoder.save_weights(encoders_dir)
        assert written == target, (written, target)  # save_weights names the file by the same version
    else:
        newest = saved_weights(encoders_dir, encoder.name)
        if newest and newest[0] != target:  # newer than the newest, even if its clock ran ahead of ours
            stamp = max(time.time_ns(), newest[0].stat().st_mtime_ns + 1_000_000)
            os.utime(target, ns=(stamp, stamp))
    encoder.weights_path = target
    return target, record


def export_state_dict(encoder: TorchEncoder, out: Path) -> Path:
    """Write the encoder network's weights as a plain state dict (``.safetensors`` by suffix, else torch)."""
    import torch

    out = Path(out)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.net.state_dict().items()}
    if out.suffix.lower() == ".safetensors":
        from safetensors.torch import save

        data = save(state, metadata={"clinfuse_encoder": encoder.name, "clinfuse_version": encoder.version})
    else:
        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, data)
    return out


def weights_digest(weights: Mapping[str, Path]) -> dict[str, str]:
    """``modality -> sha256`` of each configured weights file (what a stage's no-op fingerprint must cover)."""
    return {m: file_sha256(weights_file(Path(p))[0]) for m, p in sorted(weights.items())}

