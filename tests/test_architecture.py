"""The wings' contracts (``[tool.importlinter]`` and ``[tool.deptry]`` in pyproject.toml) hold,
and each fails when the rule it states is broken."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _copy(tmp_path: Path) -> Path:
    """The package, the flows and the configuration, copied so that a test may break them."""
    tree = tmp_path / "tree"
    for name in ("circus_tasks", "flows", "tests", "plugins", "benchmarks"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree)
    return tree


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the copy, not the installed package
    return subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True
    )


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_contracts_hold_for_the_package(tmp_path: Path) -> None:
    run = _lint_imports(_copy(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 kept, 0 broken" in run.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("jobs/transitions.py", "import prefect", "Only orchestration, worker and flows import"),
        ("store/series.py", "import circus_tasks.jobs.queries", "The wings are layered"),
        ("orchestration/run.py", "import circus_tasks.cli.output", "Nothing imports the command"),
        ("plugins/manifest.py", "import circus_tasks.plugins.registry", "No import cycles"),
    ],
)
def test_a_wrong_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    tree = _copy(tmp_path)
    _append(tree / "circus_tasks" / module, line)
    run = _lint_imports(tree)
    assert run.returncode != 0
    lines = run.stdout.splitlines()
    assert any(v.startswith(contract) and v.endswith(" BROKEN") for v in lines), run.stdout


def test_an_undeclared_import_fails_the_dependency_check(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    assert subprocess.run([str(BIN / "deptry"), "."], cwd=tree, capture_output=True).returncode == 0
    _append(tree / "circus_tasks" / "jobs" / "queries.py", "import yaml")  # only via Prefect
    run = subprocess.run([str(BIN / "deptry"), "."], cwd=tree, capture_output=True, text=True)
    assert run.returncode != 0 and "'yaml' imported but" in run.stdout + run.stderr


def test_no_module_is_over_300_lines_but_the_command_line_and_migrations() -> None:
    package = ROOT / "circus_tasks"
    exempt = {package / "cli" / "app.py"}
    long = {
        str(path.relative_to(ROOT)): lines
        for path in package.rglob("*.py")
        if path not in exempt
        and "migrations" not in path.parts
        and (lines := len(path.read_text().splitlines())) > 300
    }
    assert long == {}
