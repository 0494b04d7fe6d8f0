"""The committed wire models are exactly what tools/generate_models.py produces."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("botocore")

from openecr.models import MODEL_SHA256

ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = ROOT / "src" / "openecr" / "models"


def _generator() -> ModuleType:
    path = ROOT / "tools" / "generate_models.py"
    spec = importlib.util.spec_from_file_location("generate_models", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("generate_models", module)
    spec.loader.exec_module(module)
    return module


def test_generation_is_deterministic(tmp_path: Path) -> None:
    gen = _generator()
    first, second = tmp_path / "a", tmp_path / "b"
    gen.generate(first)
    gen.generate(second)
    for name in gen.GENERATED_FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_committed_models_match_generator(tmp_path: Path) -> None:
    gen = _generator()
    _, digest = gen.load_model(gen.model_path())
    if digest != MODEL_SHA256:
        pytest.skip(
            "installed botocore carries another ECR model than the committed files; "
            "run tools/generate_models.py to update them"
        )
    gen.generate(tmp_path)
    for name in gen.GENERATED_FILES:
        committed = (MODELS_DIR / name).read_text(encoding="utf-8")
        fresh = (tmp_path / name).read_text(encoding="utf-8")
        assert committed == fresh, f"{name} differs: rerun tools/generate_models.py"


def test_generator_covers_the_41_operations() -> None:
    from openecr.models import OPERATIONS, REQUEST_TYPES, RESPONSE_TYPES

    gen = _generator()
    assert len(gen.OPERATIONS) == 41
    assert list(OPERATIONS) == list(gen.OPERATIONS)
    assert set(REQUEST_TYPES) == set(RESPONSE_TYPES) == set(OPERATIONS)
    for name, op in OPERATIONS.items():
        assert REQUEST_TYPES[name].__name__ == op.input == f"{name}Request"
        assert RESPONSE_TYPES[name].__name__ == op.output == f"{name}Response"
