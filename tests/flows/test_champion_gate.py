"""The champion gate: paired-bootstrap lower bound over a margin, every look counted, champion on its own encoders."""

from __future__ import annotations

import numpy as np
import pytest

from flows.tracking import registry
from models.evaluation.metrics import MetricCI
from models.features.feature_set import FeatureSet

CHAMP_URI = f"models:/{registry.MODEL_NAME}@{registry.CHAMPION}"


def test_decide_needs_the_paired_lower_bound_over_the_margin():
    # A higher point AUROC whose paired lower bound is below the margin is not a better model.
    assert registry.decide(0.80, 0.75, gain=MetricCI(0.05, -0.01, 0.11))[0] == "candidate"
    assert registry.decide(0.80, 0.75, gain=MetricCI(0.05, 0.01, 0.09))[0] == "champion"
    assert registry.decide(0.80, 0.75, min_gain=0.02, gain=MetricCI(0.05, 0.01, 0.09))[0] == "candidate"
    assert registry.decide(0.80, 0.75)[0] == "candidate"  # no paired comparison: champion kept
    assert registry.decide(0.70, None)[0] == "champion"
    alias, reason = registry.decide(0.80, 0.75, gain=MetricCI(0.05, 0.01, 0.09), looks=4)
    assert "4 looks" in reason and "lower bound +0.0100" in reason


def _cohort(n: int, seed: int, keys: dict) -> tuple[FeatureSet, np.ndarray]:
    """Held-out patients (labels only matter here) and a latent score the fake models are noisy copies of."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * latent))).astype(int)
    ids = tuple(f"P{i:04d}" for i in range(n))
    fs = FeatureSet(ids, {"ct": np.zeros((n, 2), np.float32)}, np.ones((n, 1), bool), np.zeros((n, 0)), y,
                    ("ct",), encoder_keys=keys)
    return fs, latent


class FakeScorer:
    """Risks per model URI; the champion alias resolves to whichever version is champion now."""

    def __init__(self, client):
        self.client, self.risks, self.seen = client, {}, []

    def __call__(self, uri: str, features: FeatureSet) -> np.ndarray:
        self.seen.append((uri, features))
        if uri == CHAMP_URI:
            uri = self.client.get_model_version_by_alias(registry.MODEL_NAME, registry.CHAMPION).source
        return self.risks[uri]


def _register(scorer, held_out, risk, uri, **kw):
    import mlflow

    scorer.risks[uri] = risk
    with mlflow.start_run():
        mlflow.log_text("x", "model/x.txt")
        return registry.register_with_gate(uri, None, held_out, scorer=scorer, **kw)


@pytest.mark.slow
def test_gate_counts_looks_and_needs_a_clear_paired_gain(mlflow_local):
    import mlflow

    client = mlflow.MlflowClient()
    keys = {"ct": ("resnet", "v1", "h")}
    held_out, latent = _cohort(300, 0, keys)
    rng = np.random.default_rng(1)
    scorer = FakeScorer(client)
    same_keys = lambda uri: keys  # noqa: E731 - every fake model was trained on the candidate's encoders

    first = _register(scorer, held_out, latent + rng.normal(0, 1.0, 300), "file:///m/1", champion_keys=same_keys)
    assert first.alias == "champion" and first.looks == 1
    # Slightly higher point AUROC by noise: the old gate (any higher AUROC) promoted this one.
    noisy = scorer.risks["file:///m/1"] + rng.normal(0, 0.05, 300)
    second = _register(scorer, held_out, noisy, "file:///m/2", champion_keys=same_keys)
    assert second.alias == "candidate" and second.looks == 2 and second.gain_low < 0
    clearly = latent + rng.normal(0, 0.1, 300)
    third = _register(scorer, held_out, clearly, "file:///m/3", champion_keys=same_keys)
    assert third.alias == "champion" and third.looks == 3 and third.gain_low > 0
    tags = client.get_model_version(registry.MODEL_NAME, third.version).tags
    assert tags["gate_looks"] == "3" and float(tags["gate_auroc_gain_low"]) == pytest.approx(third.gain_low, abs=1e-5)
    assert tags[registry.HELD_OUT_TAG] == registry.held_out_key(held_out)
    run = client.get_run(client.get_model_version(registry.MODEL_NAME, third.version).run_id)
    assert run.data.metrics["gate_looks"] == 3 and "gate_auroc_gain_low" in run.data.metrics
    # Other held-out patients start their own count.
    other, _ = _cohort(200, 5, keys)
    scorer.risks["file:///m/3"] = np.random.default_rng(2).random(200)
    fourth = _register(scorer, other, np.random.default_rng(3).random(200), "file:///m/4", champion_keys=same_keys)
    assert fourth.looks == 1


@pytest.mark.slow
def test_champion_is_rescored_on_its_own_encoder_versions(mlflow_local):
    import mlflow

    client = mlflow.MlflowClient()
    new_keys, old_keys = {"ct": ("resnet", "v2", "h")}, {"ct": ("resnet", "v1", "h")}
    held_out, latent = _cohort(300, 4, new_keys)
    old_fs, _ = _cohort(300, 4, old_keys)
    scorer = FakeScorer(client)
    _register(scorer, held_out, latent, "file:///m/1", champion_keys=lambda uri: old_keys)
    # The candidate's embeddings come from v2; the champion was trained on v1. Without features made with
    # v1 the gate must not score the champion on v2 embeddings (the old gate did): it keeps the champion.
    kept = _register(scorer, held_out, latent + 0.01, "file:///m/2", champion_keys=lambda uri: old_keys)
    assert kept.alias == "candidate" and "other encoder versions" in kept.reason
    asked = []

    def features_for(keys):
        asked.append(keys)
        return old_fs

    scorer.seen.clear()
    _register(scorer, held_out, latent + 0.02, "file:///m/3", champion_keys=lambda uri: old_keys,
              features_for=features_for)
    assert asked == [old_keys]
    champ_calls = [fs for uri, fs in scorer.seen if uri == CHAMP_URI]
    assert champ_calls and all(fs.encoder_keys == old_keys for fs in champ_calls)
