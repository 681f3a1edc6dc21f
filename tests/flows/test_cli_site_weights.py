"""`clinfuse encoders export|check` and `clinfuse encode --weights`: a site's own encoder weights end to end."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from flows.cli import app
from flows.settings import get_settings
from ingestion.cohort import write_cohort
from ingestion.manifest import write_manifest
from models.encoders import build_encoder
from models.encoders.site_weights import export_state_dict
from models.stores.embeddings import EmbeddingStore
from tests.flows.test_cli_vocabulary import PARSE_ONLY  # the same parse-only child as the vocabulary tests
from tests.models.synthetic_arrays import write_synthetic_home


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An ingested-style home with X-ray items (synthetic normalised arrays), settings pointed at it."""
    home = tmp_path / "home"
    manifest, cohort = write_synthetic_home(home, n_patients=6, seed=5, modalities=("xray",))
    write_manifest(manifest, home / "manifest.parquet")
    write_cohort(cohort.astype({"label": "Int8"}), home / "cohort.parquet")
    monkeypatch.setenv("CLINFUSE_HOME", str(home))
    monkeypatch.delenv("CLINFUSE_ENCODER_WEIGHTS", raising=False)
    get_settings.cache_clear()
    before = torch.get_num_threads()
    yield home
    torch.set_num_threads(before)
    get_settings.cache_clear()


def _fresh_cli(tmp_path: Path, *argv: str, **env: str) -> tuple[dict, str]:
    """The CLI in a new interpreter: exit code, which heavy libraries it imported, and what it printed."""
    proc = subprocess.run([sys.executable, "-c", PARSE_ONLY, *argv], capture_output=True, text=True, timeout=120,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "CLINFUSE_HOME": str(tmp_path / "h"), **env})
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stdout + proc.stderr


def test_bad_weights_options_exit_2_before_torch_or_prefect(tmp_path: Path) -> None:
    weights = tmp_path / "ct.pt"
    weights.write_bytes(b"not read before the modality and path are checked")
    for argv, said in ((["--weights", f"ct={tmp_path / 'absent.pt'}"], "no such weights file"),
                       (["--weights", f"note={weights}"], "note encoder takes no site weights"),
                       (["--weights", f"mri={weights}"], "unknown modality 'mri'"),
                       (["--weights", str(weights)], "expected MODALITY=PATH")):
        result, output = _fresh_cli(tmp_path, "encode", *argv)
        assert result == {"code": 2, "heavy": []}, output
        assert said in " ".join(output.split()) and "Traceback" not in output


def test_the_weights_checksum_in_the_no_op_fingerprint_needs_no_torch(tmp_path: Path) -> None:
    weights = tmp_path / "ct.pt"
    weights.write_bytes(b"weights bytes")
    code = (
        "import json, sys\n"
        "from flows.commands.encoders import site_weights_from, with_site_weights\n"
        "from flows.commands.up_to_date import Check\n"
        f"check = with_site_weights(Check('encode', 'encode', {{'modality': 'all'}}), "
        f"site_weights_from(['ct={weights}'], {{}}))\n"
        "print(json.dumps({'options': check.options, 'torch': 'torch' in sys.modules}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"options": {"modality": "all", "site_weights": {"ct": hashlib.sha256(b"weights bytes").hexdigest()}},
                   "torch": False}, proc.stderr


def test_weights_from_settings_are_parsed_and_checked_like_the_option(tmp_path: Path) -> None:
    from flows.settings import Settings

    parsed = Settings(_env_file=None, encoder_weights=f"ct={tmp_path / 'a.pt'}, xray={tmp_path / 'bundle'}")
    assert parsed.encoder_weights == {"ct": tmp_path / "a.pt", "xray": tmp_path / "bundle"}
    assert Settings(_env_file=None, encoder_weights='{"eeg": "/w/eeg.pt"}').encoder_weights == {"eeg": Path("/w/eeg.pt")}
    (tmp_path / "export").mkdir()
    for argv in (["encode"], ["train"], ["pipeline", "--source", str(tmp_path / "export")]):  # all install them
        result, output = _fresh_cli(tmp_path, *argv, CLINFUSE_ENCODER_WEIGHTS=f"eeg={tmp_path / 'absent.pt'}")
        assert result == {"code": 2, "heavy": []}, (argv, output)
        assert "CLINFUSE_ENCODER_WEIGHTS" in output and "no such weights file" in " ".join(output.split())


@pytest.mark.slow
def test_export_then_check_accepts_the_same_architecture_and_refuses_another(tmp_path: Path, home: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["encoders", "export", "--modality", "xray", "--out", str(tmp_path / "x.pt")],
                        env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert (tmp_path / "x.pt").is_file() and build_encoder("xray", seed=get_settings().seed).version in out.output
    ok = runner.invoke(app, ["encoders", "check", "--weights", f"xray={tmp_path / 'x.pt'}"], env={"COLUMNS": "200"})
    assert ok.exit_code == 0 and "fits xray-resnet2d" in ok.output, ok.output
    bad = runner.invoke(app, ["encoders", "check", "-w", f"eeg={tmp_path / 'x.pt'}"], env={"COLUMNS": "200"})
    assert bad.exit_code == 2, bad.output
    assert "does not fit the expected architecture" in bad.output and "eeg-tcn-bands" in bad.output
    assert bad.exception is None or isinstance(bad.exception, SystemExit)
    odd = runner.invoke(app, ["encoders", "export", "-m", "ct", "--out", str(tmp_path / "x.onnx")])
    assert odd.exit_code == 2 and not (tmp_path / "x.onnx").exists()
    pretrained = build_encoder("xray", seed=11)  # as `clinfuse pretrain` leaves them in the home
    pretrained.save_weights(home / "encoders")
    out = runner.invoke(app, ["encoders", "export", "-m", "xray", "-o", str(tmp_path / "p.pt")], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and pretrained.version in out.output, out.output
    written = torch.load(tmp_path / "p.pt", weights_only=True)
    assert all(torch.equal(written[k], v) for k, v in pretrained.net.state_dict().items())


def _xray_rows(home: Path, version: str) -> pd.DataFrame:
    index = EmbeddingStore(home / "embeddings").index()
    return index[(index["encoder_name"] == "xray-resnet2d") & (index["encoder_version"] == version)]


def _vectors(home: Path, version: str) -> np.ndarray:
    from models.stores.embeddings import EmbeddingKey

    rows = _xray_rows(home, version).sort_values("content_sha256")
    store = EmbeddingStore(home / "embeddings")
    keys = [EmbeddingKey(r.content_sha256, r.encoder_name, r.encoder_version, r.preprocessing_hash)
            for r in rows.itertuples()]
    got = store.get_many(keys)
    return np.stack([got[k] for k in keys])


@pytest.mark.slow
def test_encode_with_site_weights_round_trips_rekeys_and_re_encodes_when_they_change(tmp_path: Path,
                                                                                     home: Path) -> None:
    runner = CliRunner()
    env = {"COLUMNS": "200"}
    default = build_encoder("xray", seed=get_settings().seed).version
    assert runner.invoke(app, ["encode", "-m", "xray", "--device", "cpu"], env=env).exit_code == 0
    n = len(_xray_rows(home, default))
    assert n > 0
    site_file = tmp_path / "site" / "xray.pt"
    assert runner.invoke(app, ["encoders", "export", "-m", "xray", "-o", str(site_file)], env=env).exit_code == 0

    first = runner.invoke(app, ["encode", "-m", "xray", "--device", "cpu", "--weights", f"xray={site_file}"],
                          env=env)
    assert first.exit_code == 0, first.output
    installed = [p for p in (home / "encoders").glob("xray-resnet2d-*.pt")]
    assert len(installed) == 1
    site_version = installed[0].stem.split("-")[-1]
    assert site_version != default and site_version in first.output
    np.testing.assert_array_equal(_vectors(home, site_version), _vectors(home, default))  # same numbers, new key

    again = runner.invoke(app, ["encode", "-m", "xray", "--device", "cpu", "--weights", f"xray={site_file}"],
                          env=env)
    assert again.exit_code == 0 and "nothing to do" in again.output, again.output

    export_state_dict(build_encoder("xray", seed=99), site_file)  # the site retrained: same path, new content
    changed = runner.invoke(app, ["encode", "-m", "xray", "--device", "cpu", "--weights", f"xray={site_file}"],
                            env=env)
    assert changed.exit_code == 0 and "nothing to do" not in changed.output, changed.output
    versions = {p.stem.split("-")[-1] for p in (home / "encoders").glob("xray-resnet2d-*.pt")}
    (new_version,) = versions - {site_version}
    assert len(_xray_rows(home, new_version)) == n

    wrong = tmp_path / "site" / "eeg.pt"
    export_state_dict(build_encoder("eeg"), wrong)
    before = len(EmbeddingStore(home / "embeddings").index())
    refused = runner.invoke(app, ["encode", "-m", "xray", "--weights", f"xray={wrong}"], env=env)
    assert refused.exit_code == 2 and "does not fit the expected architecture" in refused.output, refused.output
    assert len(EmbeddingStore(home / "embeddings").index()) == before
