"""Docs that stay true: every repository path and dotted module a doc names exists; every benchmark section is
stamped (or says it predates stamping); the stamp is written with the section; the README names exactly the
Debian packages `make test` installs."""

from __future__ import annotations

import ast
import re
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

import pytest

from benchmarks import markdown_section as ms
from tests.conftest import REPO_ROOT

DOCS = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")])
PACKAGES = ("ingestion", "models", "flows", "dashboard", "benchmarks", "tests", "scripts", "docs")
PATH_RE = re.compile(rf"(?<![\w./-])((?:{'|'.join(PACKAGES)})/[\w./-]*)")
MODULE_RE = re.compile(rf"(?<![\w./-])((?:{'|'.join(PACKAGES[:5])})(?:\.[A-Za-z_]\w*)+)")
PLACEHOLDER = re.compile(r"[<>*{}]|\.\.\.")


def _doc_names(pattern: re.Pattern[str]) -> list[tuple[str, int, str]]:
    found = []
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            for match in pattern.finditer(line):
                end = line[match.end():match.end() + 1]
                if end in "<*{" and end:  # a placeholder such as benchmarks/<name>.py
                    continue
                found.append((doc.name, number, match.group(1).rstrip(".,;:)")))
    return found


@cache
def _top_level_names(module: Path) -> frozenset[str]:
    """Names a module defines at top level (functions, classes, assignments, imports)."""
    names: set[str] = set()
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return frozenset(names)


def module_problem(dotted: str) -> str | None:
    """Why ``dotted`` (e.g. ``flows.commands.train`` or ``models.fusion.FUSIONS``) names nothing in the tree.

    Walks packages (folders), then a module file; the first name after the module (or a name
    a package's ``__init__`` defines) must be defined at its top level; deeper names are not checked.
    """
    parts = dotted.split(".")
    path = REPO_ROOT
    for i, part in enumerate(parts):
        if (path / part).is_dir():
            path = path / part
        elif (path / f"{part}.py").is_file():
            rest = parts[i + 1:]
            module = path / f"{part}.py"
            if rest and rest[0] not in _top_level_names(module):
                return f"{module.relative_to(REPO_ROOT)} defines no {rest[0]!r}"
            return None
        elif i > 0 and (path / "__init__.py").is_file() and part in _top_level_names(path / "__init__.py"):
            return None
        else:
            return f"no module {'.'.join(parts[:i + 1])}"
    return None


def test_every_path_a_doc_names_exists() -> None:
    missing = [f"{doc}:{n}: {path}" for doc, n, path in _doc_names(PATH_RE)
               if not PLACEHOLDER.search(path) and not (REPO_ROOT / path).exists()]
    assert not missing, "docs name paths that do not exist:\n" + "\n".join(missing)


def test_every_module_a_doc_names_exists() -> None:
    wrong = [f"{doc}:{n}: {name}: {why}" for doc, n, name in _doc_names(MODULE_RE)
             if (why := module_problem(name))]
    assert not wrong, "docs name modules that do not exist:\n" + "\n".join(wrong)


def test_the_checker_catches_a_moved_module() -> None:
    """The checks above would pass vacuously if the patterns matched nothing or everything."""
    assert len(_doc_names(MODULE_RE)) > 10 and len(_doc_names(PATH_RE)) > 10
    assert module_problem("flows.commands.train") is None and module_problem("models.fusion.FUSIONS") is None
    assert module_problem("flows.commands.nonexistent") == "no module flows.commands.nonexistent"
    assert module_problem("models.fusion.NOPE") == "no module models.fusion.NOPE"
    assert module_problem("flows.settings.NOPE") == "flows/settings.py defines no 'NOPE'"
    assert module_problem("ingestion.eeg") == "no module ingestion.eeg"  # moved to ingestion.readers.eeg
    assert PATH_RE.search("see `models/encoders/foo.py`").group(1) == "models/encoders/foo.py"


@pytest.mark.parametrize("doc", [ms.BENCHMARKS_MD, ms.RELIABILITY_MD], ids=lambda p: p.name)
def test_every_benchmark_section_is_stamped(doc: Path) -> None:
    sections = ms.benchmark_sections(doc)
    assert sections, f"{doc.name}: no benchmark section found"
    unstamped = [heading for heading, body in sections if not ms.STAMP_RE.search(body)]
    assert not unstamped, f"{doc.name}: sections without a stamp line: {unstamped}"


def test_write_section_stamps_command_date_commit_machine_and_load(tmp_path: Path) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n## Other\n\nkept as is\n\n## Ours\n\nold figures\n")
    ms.write_section("## Ours", "| x | 1 |", doc, command="python benchmarks/bench_x.py --write")
    ms.write_section("## Ours", "| x | 2 |", doc, command="python benchmarks/bench_x.py --write")
    text = doc.read_text()
    assert "## Other\n\nkept as is\n" in text and "old figures" not in text and "| x | 1 |" not in text
    (heading, body), = [s for s in ms.sections(text) if s[0] == "## Ours"]
    stamps = ms.STAMP_RE.findall(body)
    assert len(stamps) == 1 and body.index(stamps[0]) < body.index("| x | 2 |")
    line = stamps[0]
    head = ms._git("rev-parse", "--short", "HEAD")
    assert "`python benchmarks/bench_x.py --write`" in line
    assert datetime.now(timezone.utc).strftime("%Y-%m-%d") in line and f"commit {head}" in line
    assert re.search(r"\d+ cores, \d+ GiB", line) and re.search(r"load average [\d.]+ / [\d.]+ / [\d.]+", line)


def test_the_stamp_names_the_running_script() -> None:
    command = ms.command_text([str(REPO_ROOT / "benchmarks" / "bench_ingest.py"), "--patients", "25", "--write"])
    assert command.endswith("benchmarks/bench_ingest.py --patients 25 --write")


def test_readme_names_exactly_the_debian_packages_make_test_installs() -> None:
    script = (REPO_ROOT / "scripts" / "ensure-system-packages.sh").read_text()
    installed = set(re.findall(r"need\+=\(([\w.+-]+)\)", script))
    assert installed, "no package found in scripts/ensure-system-packages.sh"
    readme = (REPO_ROOT / "README.md").read_text()
    paragraph = readme[readme.index("scripts/ensure-system-packages.sh"):].split("\n\n", 1)[0]
    named = set(re.findall(r"`([\w.+-]+)`", paragraph)) - {"apt-get", "sudo"}
    assert named == installed, f"README names {sorted(named)}, make test installs {sorted(installed)}"


def test_the_stamp_calls_a_tree_dirty_for_code_not_for_the_benchmarks_page(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A benchmark writing its second section has already changed docs/BENCHMARKS.md: that alone is not dirty."""
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "BENCHMARKS.md").write_text("# Benchmarks\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "first")
    monkeypatch.setattr(ms, "REPO", tmp_path)
    (tmp_path / "docs" / "BENCHMARKS.md").write_text("# Benchmarks\n\n## A\n\nfigures\n")
    assert "uncommitted" not in ms.commit_text()
    (tmp_path / "code.py").write_text("x = 2\n")
    assert ms.commit_text().endswith("with uncommitted changes in the tree")
