"""The CLI's closed vocabularies as ``enum.Enum``: one spelling per choice, checked when the command line is parsed.

Why enums and not free strings: Typer turns an ``Enum`` option into a choice, so
``--fusion transfomer`` fails at parse time (exit 2, with the list of choices)
before Prefect, MLflow or torch start, instead of minutes later inside a flow.

The values are the models' registry names (``models.fusion.FUSIONS``,
``models.imputation.registry.IMPUTERS`` + ``auto``, ``models.training.config.STRATEGIES``,
``models.fusion.cross_attention.POOLS``). They are spelled here, not imported,
because importing those registries loads torch and ``clinfuse --help`` must stay
fast; ``tests/flows/test_cli_vocabulary.py`` fails when the two drift apart.
"""

from __future__ import annotations

import sys
from enum import Enum

from models import defaults as d


class Fusion(str, Enum):
    """Fusion architectures, by their ``models.fusion.FUSIONS`` name."""

    early = "early"
    late = "late"
    hybrid = "hybrid"
    cross_attention = "cross_attention"


class Impute(str, Enum):
    """Imputation of missing modalities: ``auto`` (nested validation) or an ``IMPUTERS`` name."""

    auto = "auto"
    cross_profile = "cross_profile"
    complete_case = "complete_case"
    mean = "mean"
    zero = "zero"


class Strategy(str, Enum):
    """Training strategies (``models.training.config.STRATEGIES``)."""

    frozen = "frozen"
    joint = "joint"
    finetune = "finetune"


class Pool(str, Enum):
    """Cross-attention pooling (``models.fusion.cross_attention.POOLS``)."""

    concat = "concat"
    sum = "sum"
    max = "max"


DEFAULT_FUSION = Fusion.early
DEFAULT_IMPUTE = Impute.auto
"""``auto`` everywhere (train, pipeline, deployments): the method is chosen by nested validation on the
training patients, scored both as-is and with modalities hidden, so it adapts to the cohort at hand."""
DEFAULT_STRATEGY = Strategy.frozen
DEFAULT_POOL = Pool(d.POOL)

DEPRECATED_ALIASES = {"attention": Fusion.cross_attention.value, "intermediate": Fusion.hybrid.value}
"""Old names of fusion kinds (``models.fusion.ALIASES``), still accepted on the command line with a note."""


def normalize_token(token: str) -> str:
    """Map a deprecated alias to its registry name (a Click ``token_normalize_func``), saying so on stderr.

    Why here: Click applies this to each choice value before matching, so the alias
    parses while the help and the error message list only the canonical names.
    """
    canonical = DEPRECATED_ALIASES.get(token)
    if canonical is None:
        return token
    print(f"note: {token!r} is a deprecated name; use {canonical!r}", file=sys.stderr)
    return canonical


ALIAS_CONTEXT = {"token_normalize_func": normalize_token}
"""``context_settings`` for commands that take ``--fusion``."""
