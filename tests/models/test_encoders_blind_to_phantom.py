"""The encoders must not know the phantom cohort that tests them (issue 23).

A scan of ``models/encoders``: the word "phantom" may appear only inside a
docstring that says the encoder must not know it, and no encoder module imports
the phantom package. This fails if a generator-fitted constant, comment or import
comes back (the former CT block named its HU offsets after the phantom's lesion).
"""

from __future__ import annotations

import ast
from pathlib import Path

ENCODERS = Path(__file__).resolve().parents[2] / "models" / "encoders"


def _docstring_lines(tree: ast.Module) -> dict[int, str]:
    """Line number -> the docstring covering it, for module, class and function docstrings."""
    lines: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                for n in range(first.lineno, (first.end_lineno or first.lineno) + 1):
                    lines[n] = first.value.value
    return lines


def phantom_mentions(source: str) -> list[tuple[int, str]]:
    """Lines that mention the phantom outside a docstring saying the encoder must not know it."""
    tree = ast.parse(source)
    docs = _docstring_lines(tree)
    bad = []
    for n, line in enumerate(source.splitlines(), start=1):
        if "phantom" in line.lower():
            doc = docs.get(n, "")
            if "must not know" not in " ".join(doc.lower().split()):
                bad.append((n, line.strip()))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and "phantom" in (node.module or ""):
            bad.append((node.lineno, f"from {node.module} import ..."))
        if isinstance(node, ast.Import) and any("phantom" in a.name for a in node.names):
            bad.append((node.lineno, "import " + ", ".join(a.name for a in node.names)))
    return bad


def test_no_encoder_module_knows_the_phantom() -> None:
    found = {p.name: phantom_mentions(p.read_text()) for p in sorted(ENCODERS.rglob("*.py"))}
    assert len(found) >= 5
    assert not {k: v for k, v in found.items() if v}


def test_the_scan_catches_a_constant_a_comment_and_an_import() -> None:
    assert phantom_mentions('"""Features."""\nLESION_HU = 8.0  # the phantom lesion is always +8 HU\n')
    assert phantom_mentions('"""Features."""\nfrom ingestion.phantom.ct import lesion_contrast_hu\n')
    assert phantom_mentions('"""Features fitted to the phantom."""\n')
    assert not phantom_mentions('"""Features.\n\nThe encoder must not know the phantom.\n"""\nX = 1\n')
