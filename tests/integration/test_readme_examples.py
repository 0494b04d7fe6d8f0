"""Every ```python and ```bash example in the README runs against a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from harness import TEST_ACCESS_KEY, TEST_REGION, TEST_SECRET_KEY, ServerProcess

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXAMPLES = [(kind, code) for kind, code in _BLOCK.findall(README.read_text())]


def test_readme_has_runnable_examples() -> None:
    kinds = {kind for kind, _ in EXAMPLES}
    assert kinds == {"python", "bash"}


@pytest.mark.parametrize(
    ("kind", "code"), EXAMPLES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(EXAMPLES)]
)
def test_readme_example_runs(server: ServerProcess, tmp_path: Path, kind: str, code: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=TEST_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=TEST_SECRET_KEY,
        AWS_DEFAULT_REGION=TEST_REGION,
        AWS_ENDPOINT_URL=server.url,
        AWS_CONFIG_FILE=str(tmp_path / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
        HOME=str(tmp_path),
    )
    command = (
        [sys.executable, "-c", code]
        if kind == "python"
        else ["bash", "-euo", "pipefail", "-c", code]
    )
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, (
        f"example failed:\n{code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
