"""The study definition is the only place product code splits patients into training and held-out.

Three flows used to define the study three ways (train rebuilt the split, evaluate used other encoder
keys and labels); an AST scan keeps every other module off the split rule itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("ingestion", "models", "flows", "dashboard")
SPLIT_RULE = {"held_out_mask", "split_held_out"}
ALLOWED = {Path("models/held_out.py"), Path("models/study_definition.py")}


def _uses(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    names |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return names & SPLIT_RULE


def test_only_the_study_definition_applies_the_held_out_rule() -> None:
    offenders = {str(p.relative_to(ROOT)): sorted(_uses(p)) for package in PRODUCT
                 for p in sorted((ROOT / package).rglob("*.py"))
                 if p.relative_to(ROOT) not in ALLOWED and _uses(p)}
    assert not offenders, f"split patients through models.study_definition, not the rule itself: {offenders}"


def test_the_scan_sees_a_use(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from models.held_out import split_held_out\n_, h = split_held_out(fs, 0.2, 7)\n")
    assert _uses(sample) == {"split_held_out"}
