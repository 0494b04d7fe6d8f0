"""The SDK's static typing, checked with ``mypy --strict`` on files in ``tests/typing/``.

* ``sdk_every_operation.py`` calls all 41 operations through ``ECR`` and ``AsyncECR`` with
  correct types and pins each result type: mypy must accept it.
* ``sdk_wrong_calls.py`` makes deliberate mistakes: mypy must reject exactly its marked
  lines, with the marked error codes (so the first check can fail).
* ``sdk_untyped_gaps.py`` holds misuse mypy cannot see today because some entry points are
  typed ``Any``; it is an ``xfail`` until they are typed.

The files are type-checked only, never imported or run.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from openecr.sdk._operations import SyncOperations

ROOT = Path(__file__).resolve().parents[2]
TYPING = ROOT / "tests" / "typing"
ALL_OPERATIONS = frozenset(
    name
    for name in vars(SyncOperations)
    if not name.startswith(("_", "iter_")) and not name.endswith("_pages")
)
ERROR_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")
MARKER = re.compile(r"#\s*wrong:\s*(?P<code>[a-z-]+)")


@pytest.fixture(scope="session")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy-cache")


def run_mypy(path: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """``mypy --strict`` from the repository root, so pyproject's [tool.mypy] applies."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--show-error-codes",
            "--no-pretty",
            "--cache-dir",
            str(cache),
            str(path.relative_to(ROOT)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def errors_by_line(output: str) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for line in output.splitlines():
        match = ERROR_LINE.match(line)
        if match:
            found.setdefault(int(match["line"]), set()).add(match["code"])
    return found


def markers(path: Path) -> dict[int, str]:
    return {
        number: match["code"]
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if (match := MARKER.search(line))
    }


def operations_called(path: Path, function: str) -> set[str]:
    """Names of the client methods ``function`` in ``path`` calls."""
    tree = ast.parse(path.read_text())
    body = next(
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function
    )
    return {
        node.func.attr
        for node in ast.walk(body)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }


def test_the_typing_file_calls_all_41_operations_sync_and_async() -> None:
    assert len(ALL_OPERATIONS) == 41
    path = TYPING / "sdk_every_operation.py"
    for function in ("sync_client", "async_client"):
        missing = ALL_OPERATIONS - operations_called(path, function)
        assert not missing, (function, sorted(missing))


def test_every_operation_type_checks_under_strict_mypy(mypy_cache: Path) -> None:
    result = run_mypy(TYPING / "sdk_every_operation.py", mypy_cache)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stdout


def test_wrong_calls_are_rejected_by_strict_mypy(mypy_cache: Path) -> None:
    path = TYPING / "sdk_wrong_calls.py"
    result = run_mypy(path, mypy_cache)
    assert result.returncode == 1, result.stdout + result.stderr
    found = errors_by_line(result.stdout)
    expected = markers(path)
    assert len(expected) >= 10
    # errors exactly on the marked lines, each with (at least) the marked code
    assert set(found) == set(expected), result.stdout
    for line, code in expected.items():
        assert code in found[line], (line, code, found[line])


def test_untyped_entry_points_reject_misuse(mypy_cache: Path) -> None:
    path = TYPING / "sdk_untyped_gaps.py"
    result = run_mypy(path, mypy_cache)
    found = errors_by_line(result.stdout)
    expected = markers(path)
    for line, code in expected.items():
        assert code in found.get(line, set()), (line, code, result.stdout)
