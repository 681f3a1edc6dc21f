"""The study definition is the only place product code splits patients into training and held-out.

Three flows used to define the study three ways (train rebuilt the split, evaluate used other encoder
keys and labels); an AST scan keeps every other module off the split rule itself, the benchmarks
included (they read the study, never rebuild it). Splitting *inside* the training patients (validation
for early stopping, cross-fitting folds, imputation selection) is allowed only in the training modules,
which are only ever handed the study's training patients: a splitter anywhere else would be a second
study definition.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("ingestion", "models", "flows", "dashboard")
SPLIT_RULE = {"held_out_mask", "split_held_out"}
ALLOWED = {Path("models/held_out.py"), Path("models/study_definition.py")}
SPLITTERS = {"train_test_split", "ShuffleSplit", "StratifiedShuffleSplit", "KFold", "StratifiedKFold", "GroupKFold",
             "StratifiedGroupKFold", "GroupShuffleSplit", "LeaveOneOut", "RepeatedStratifiedKFold", "patient_split"}
INNER_SPLITS = {Path("models/training/train.py"), Path("models/training/crossfit.py"), Path("models/training/joint.py"),
                Path("models/imputation/select.py"), Path("models/imputation/masked_classifier.py")}
"""training modules: they split the training patients they are given (validation, folds), never the cohort"""


def _names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    return names | {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


def _uses(path: Path) -> set[str]:
    return _names(path) & SPLIT_RULE


def test_only_the_study_definition_applies_the_held_out_rule() -> None:
    offenders = {str(p.relative_to(ROOT)): sorted(_uses(p)) for package in (*PRODUCT, "benchmarks")
                 for p in sorted((ROOT / package).rglob("*.py"))
                 if p.relative_to(ROOT) not in ALLOWED and _uses(p)}
    assert not offenders, f"split patients through models.study_definition, not the rule itself: {offenders}"


def test_patients_are_split_further_only_inside_training() -> None:
    offenders = {str(p.relative_to(ROOT)): sorted(_names(p) & SPLITTERS) for package in PRODUCT
                 for p in sorted((ROOT / package).rglob("*.py"))
                 if p.relative_to(ROOT) not in INNER_SPLITS and _names(p) & SPLITTERS}
    assert not offenders, f"a splitter outside the training modules makes a second study: {offenders}"
    assert all((ROOT / p).is_file() for p in INNER_SPLITS), "an allowed module moved: update INNER_SPLITS"


def test_the_scan_sees_a_use(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from models.held_out import split_held_out\n_, h = split_held_out(fs, 0.2, 7)\n")
    assert _uses(sample) == {"split_held_out"}


def test_the_splitter_scan_sees_sklearn_and_the_validation_split(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import sklearn.model_selection as ms\nfrom models.training.train import patient_split\n"
                      "a, b = ms.train_test_split(x)\n")
    assert _names(sample) & SPLITTERS == {"train_test_split", "patient_split"}
