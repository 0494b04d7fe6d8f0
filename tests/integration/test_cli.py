"""The ``openecr`` user commands, run as a subprocess against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import TEST_ACCESS_KEY, TEST_REGION, TEST_SECRET_KEY, ServerProcess
from images import build_image, write_oci_layout


def run_cli(server: ServerProcess, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DOCKER_"))}
    env.update(
        AWS_ACCESS_KEY_ID=TEST_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=TEST_SECRET_KEY,
        AWS_DEFAULT_REGION=TEST_REGION,
        HOME=str(home),
    )
    return subprocess.run(
        [sys.executable, "-m", "openecr", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


@pytest.fixture
def cli(server: ServerProcess, tmp_path: Path) -> Any:
    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(server, tmp_path, *args, "--endpoint-url", server.url)

    return call


def test_repository_lifecycle_through_the_cli(cli: Any, repo_name: str) -> None:
    created = as_json(
        cli("repository", "create", repo_name, "--immutable", "--tag", "team=a", "--output", "json")
    )
    assert created["repository"]["repositoryName"] == repo_name
    assert created["repository"]["imageTagMutability"] == "IMMUTABLE"
    assert "ResponseMetadata" not in created
    listed = as_json(cli("repository", "list", "--output", "json"))
    assert repo_name in [r["repositoryName"] for r in listed["repositories"]]
    assert repo_name in ok(cli("repository", "list"))
    assert "deleted" in ok(cli("repository", "delete", repo_name))


def test_errors_are_one_line_with_the_ecr_code(cli: Any) -> None:
    result = cli("repository", "delete", "does/not-exist")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "RepositoryNotFoundException" in lines[0]


def test_image_push_pull_list_delete(cli: Any, repo_name: str, tmp_path: Path) -> None:
    ok(cli("repository", "create", repo_name))
    image = build_image(layers=2)
    source = write_oci_layout(tmp_path / "source", {"v1": image})
    pushed = as_json(cli("image", "push", str(source), f"{repo_name}:v1", "--output", "json"))
    assert pushed["digest"] == image.digest

    destination = tmp_path / "pulled"
    pulled = as_json(cli("image", "pull", f"{repo_name}:v1", str(destination), "--output", "json"))
    assert pulled["digest"] == image.digest
    for digest, data in image.blobs.items():
        assert (
            destination / "blobs" / "sha256" / digest.removeprefix("sha256:")
        ).read_bytes() == data

    listed = as_json(cli("image", "list", repo_name, "--output", "json"))
    assert [d["imageTags"] for d in listed["imageDetails"]] == [["v1"]]
    ok(cli("image", "delete", f"{repo_name}:v1"))
    assert as_json(cli("image", "list", repo_name, "--output", "json"))["imageDetails"] == []


def test_login_writes_the_docker_config(cli: Any, server: ServerProcess, tmp_path: Path) -> None:
    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"auths": {"other.example": {"auth": "eA=="}}}))
    assert "Login Succeeded" in ok(cli("login", "--docker-config", str(config)))
    auths = json.loads(config.read_text())["auths"]
    host = server.url.removeprefix("http://")
    assert set(auths) == {"other.example", host}
    assert oct(config.stat().st_mode & 0o777) == "0o600"


def test_lifecycle_policy_commands(cli: Any, repo_name: str, tmp_path: Path) -> None:
    ok(cli("repository", "create", repo_name))
    policy = {
        "rules": [
            {
                "rulePriority": 1,
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": 5,
                },
                "action": {"type": "expire"},
            }
        ]
    }
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(policy))
    ok(cli("lifecycle-policy", "put", repo_name, str(policy_file)))
    assert json.loads(ok(cli("lifecycle-policy", "get", repo_name))) == policy
    preview = as_json(cli("lifecycle-policy", "preview", repo_name, "--output", "json"))
    assert preview["status"] == "COMPLETE"
    assert preview["summary"] == {"expiringImageTotalCount": 0}
