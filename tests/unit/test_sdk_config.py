"""Where ``ECR``/``AsyncECR`` get credentials, region and endpoint from, as the AWS SDKs do.

Every test starts from an environment without ``AWS_*`` variables and with ``HOME`` in a
temporary directory (so ``~/.aws/credentials`` and ``~/.aws/config`` are files the test
writes). Which credentials a client resolved is observed where it matters: the scripted
stand-in server of ``test_sdk_transport`` verifies each request's SigV4 signature against the
expected key pair and reads the ``X-Amz-Security-Token`` header.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_sdk_transport import ScriptedServer, ok, scripted_server

from openecr import ECR, AsyncECR, ConfigurationError
from openecr.auth.sigv4 import VerifiedRequest

SECRETS = {
    "AKIAEXPLICIT00000001": "explicit-secret",
    "AKIAENVIRONMENT00001": "environment-secret",
    "AKIASHAREDDEFAULT001": "shared-default-secret",
    "AKIASHAREDDEV0000001": "shared-dev-secret",
    "AKIACONFIGFILE000001": "config-file-secret",
    "AKIACONFIGDEV0000001": "config-dev-secret",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def stub() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server.script(ok())


def write_credentials(home: Path, text: str) -> None:
    (home / ".aws" / "credentials").write_text(text)


def write_config(home: Path, text: str) -> None:
    (home / ".aws" / "config").write_text(text)


def signed_by(server: ScriptedServer, ecr: ECR) -> VerifiedRequest:
    """Sends one request and returns what its verified signature proves."""
    server.reset()
    with ecr:
        ecr.describe_registry()
    return server.requests[-1].verify(SECRETS)


def env_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "environment-secret")


# --- credentials --------------------------------------------------------------------------


def test_explicit_keys_win_over_everything(
    stub: ScriptedServer, monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    env_credentials(monkeypatch)
    write_credentials(
        clean_environment,
        "[default]\naws_access_key_id = AKIASHAREDDEFAULT001\n"
        "aws_secret_access_key = shared-default-secret\n",
    )
    ecr = ECR(
        endpoint_url=stub.url,
        region="us-east-1",
        access_key_id="AKIAEXPLICIT00000001",
        secret_access_key="explicit-secret",
        session_token="explicit-token",
    )
    verified = signed_by(stub, ecr)
    assert verified.access_key_id == "AKIAEXPLICIT00000001"
    assert verified.session_token == "explicit-token"
    assert stub.requests[-1].headers["x-amz-security-token"] == "explicit-token"


def test_explicit_keys_do_not_pick_up_the_environment_session_token(
    stub: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_credentials(monkeypatch)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "belongs-to-the-environment-keys")
    ecr = ECR(
        endpoint_url=stub.url,
        region="us-east-1",
        access_key_id="AKIAEXPLICIT00000001",
        secret_access_key="explicit-secret",
    )
    verified = signed_by(stub, ecr)
    assert verified.access_key_id == "AKIAEXPLICIT00000001"
    assert verified.session_token is None
    assert "x-amz-security-token" not in stub.requests[-1].headers


def test_half_an_explicit_key_pair_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        ECR(region="us-east-1", access_key_id="AKIAEXPLICIT00000001")
    with pytest.raises(ConfigurationError):
        ECR(region="us-east-1", secret_access_key="explicit-secret")


def test_environment_keys_and_session_token(
    stub: ScriptedServer, monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    env_credentials(monkeypatch)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-session-token")
    write_credentials(
        clean_environment,
        "[default]\naws_access_key_id = AKIASHAREDDEFAULT001\n"
        "aws_secret_access_key = shared-default-secret\n",
    )
    verified = signed_by(stub, ECR(endpoint_url=stub.url, region="us-east-1"))
    assert verified.access_key_id == "AKIAENVIRONMENT00001"
    assert verified.session_token == "env-session-token"
    assert stub.requests[-1].headers["x-amz-security-token"] == "env-session-token"


def test_environment_keys_without_a_session_token_send_none(
    stub: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_credentials(monkeypatch)
    verified = signed_by(stub, ECR(endpoint_url=stub.url, region="us-east-1"))
    assert verified.access_key_id == "AKIAENVIRONMENT00001"
    assert "x-amz-security-token" not in stub.requests[-1].headers


SHARED = (
    "[default]\n"
    "aws_access_key_id = AKIASHAREDDEFAULT001\n"
    "aws_secret_access_key = shared-default-secret\n"
    "\n"
    "[dev]\n"
    "aws_access_key_id = AKIASHAREDDEV0000001\n"
    "aws_secret_access_key = shared-dev-secret\n"
    "aws_session_token = dev-session-token\n"
)
CONFIG = (
    "[default]\n"
    "region = eu-west-1\n"
    "\n"
    "[profile dev]\n"
    "region = ap-southeast-2\n"
    "endpoint_url = https://ecr.dev.example.com\n"
    "\n"
    "[profile cfgonly]\n"
    "region = sa-east-1\n"
    "aws_access_key_id = AKIACONFIGDEV0000001\n"
    "aws_secret_access_key = config-dev-secret\n"
)


def test_shared_credentials_default_profile(stub: ScriptedServer, clean_environment: Path) -> None:
    write_credentials(clean_environment, SHARED)
    write_config(clean_environment, CONFIG)
    ecr = ECR(endpoint_url=stub.url)
    assert ecr.region == "eu-west-1"  # from [default] of the config file
    verified = signed_by(stub, ecr)
    assert verified.access_key_id == "AKIASHAREDDEFAULT001"
    assert verified.region == "eu-west-1"
    assert verified.session_token is None


def test_aws_profile_selects_a_profile(
    stub: ScriptedServer, monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    write_credentials(clean_environment, SHARED)
    write_config(clean_environment, CONFIG)
    monkeypatch.setenv("AWS_PROFILE", "dev")
    ecr = ECR()
    assert (ecr.region, ecr.endpoint_url) == ("ap-southeast-2", "https://ecr.dev.example.com")
    verified = signed_by(stub, ecr.with_options(endpoint_url=stub.url))
    assert verified.access_key_id == "AKIASHAREDDEV0000001"
    assert verified.session_token == "dev-session-token"


def test_profile_argument_selects_a_profile_and_beats_environment_keys(
    stub: ScriptedServer, monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    """botocore: an explicitly chosen profile removes the environment credential provider."""
    write_credentials(clean_environment, SHARED)
    write_config(clean_environment, CONFIG)
    env_credentials(monkeypatch)
    monkeypatch.setenv("AWS_PROFILE", "default")
    ecr = ECR(profile="dev", endpoint_url=stub.url)
    assert ecr.region == "ap-southeast-2"
    assert signed_by(stub, ecr).access_key_id == "AKIASHAREDDEV0000001"


def test_environment_keys_beat_aws_profile(
    stub: ScriptedServer, monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    write_credentials(clean_environment, SHARED)
    write_config(clean_environment, CONFIG)
    env_credentials(monkeypatch)
    monkeypatch.setenv("AWS_PROFILE", "dev")
    ecr = ECR(endpoint_url=stub.url)
    assert ecr.region == "ap-southeast-2"  # the profile still supplies the region
    assert signed_by(stub, ecr).access_key_id == "AKIAENVIRONMENT00001"


def test_credentials_from_the_config_file(stub: ScriptedServer, clean_environment: Path) -> None:
    write_config(clean_environment, CONFIG)
    ecr = ECR(profile="cfgonly", endpoint_url=stub.url)
    assert ecr.region == "sa-east-1"
    verified = signed_by(stub, ecr)
    assert verified.access_key_id == "AKIACONFIGDEV0000001"
    assert verified.region == "sa-east-1"


def test_shared_credentials_file_beats_the_config_file(
    stub: ScriptedServer, clean_environment: Path
) -> None:
    write_credentials(clean_environment, SHARED)
    write_config(
        clean_environment,
        "[default]\nregion = eu-north-1\naws_access_key_id = AKIACONFIGFILE000001\n"
        "aws_secret_access_key = config-file-secret\n",
    )
    assert signed_by(stub, ECR(endpoint_url=stub.url)).access_key_id == "AKIASHAREDDEFAULT001"


def test_file_locations_from_the_environment(
    stub: ScriptedServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    credentials = tmp_path / "elsewhere-credentials"
    config = tmp_path / "elsewhere-config"
    credentials.write_text(SHARED)
    config.write_text(CONFIG)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    ecr = ECR(profile="dev", endpoint_url=stub.url)
    assert ecr.region == "ap-southeast-2"
    assert signed_by(stub, ecr).access_key_id == "AKIASHAREDDEV0000001"


def test_an_unknown_profile_argument_is_refused(clean_environment: Path) -> None:
    write_credentials(clean_environment, SHARED)
    with pytest.raises(ConfigurationError, match="nosuch"):
        ECR(profile="nosuch", region="us-east-1")


def test_an_unknown_aws_profile_is_refused(
    monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    write_credentials(clean_environment, SHARED)
    env_credentials(monkeypatch)
    monkeypatch.setenv("AWS_PROFILE", "nosuch")
    with pytest.raises(ConfigurationError, match="nosuch"):
        ECR(region="us-east-1")


def test_missing_credentials_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="credentials"):
        ECR(region="us-east-1")
    with pytest.raises(ConfigurationError, match="credentials"):
        AsyncECR(region="us-east-1")


def test_a_profile_without_keys_is_refused(
    monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    write_config(clean_environment, CONFIG)
    monkeypatch.setenv("AWS_PROFILE", "dev")  # has a region but no keys anywhere
    with pytest.raises(ConfigurationError, match="credentials"):
        ECR()


# --- region -------------------------------------------------------------------------------


def test_region_order(monkeypatch: pytest.MonkeyPatch, clean_environment: Path) -> None:
    env_credentials(monkeypatch)
    write_config(clean_environment, CONFIG)
    assert ECR().region == "eu-west-1"  # profile
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-2")
    assert ECR().region == "us-east-2"  # AWS_DEFAULT_REGION beats the profile
    monkeypatch.setenv("AWS_REGION", "ca-central-1")
    assert ECR().region == "ca-central-1"  # AWS_REGION beats AWS_DEFAULT_REGION
    assert ECR(region="me-south-1").region == "me-south-1"  # the argument beats all


def test_region_is_the_signing_region(
    stub: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_credentials(monkeypatch)
    monkeypatch.setenv("AWS_REGION", "ca-central-1")
    assert signed_by(stub, ECR(endpoint_url=stub.url)).region == "ca-central-1"


def test_missing_region_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    env_credentials(monkeypatch)
    with pytest.raises(ConfigurationError, match="region"):
        ECR()
    with pytest.raises(ConfigurationError, match="region"):
        AsyncECR(endpoint_url="http://127.0.0.1:1")


# --- endpoint -----------------------------------------------------------------------------


def test_default_endpoint_is_the_regional_ecr_api(monkeypatch: pytest.MonkeyPatch) -> None:
    env_credentials(monkeypatch)
    assert ECR(region="eu-west-3").endpoint_url == "https://api.ecr.eu-west-3.amazonaws.com"
    monkeypatch.setenv("AWS_REGION", "ap-northeast-1")
    assert ECR().endpoint_url == "https://api.ecr.ap-northeast-1.amazonaws.com"


def test_endpoint_order(monkeypatch: pytest.MonkeyPatch, clean_environment: Path) -> None:
    env_credentials(monkeypatch)
    write_config(clean_environment, CONFIG)
    monkeypatch.setenv("AWS_PROFILE", "dev")
    assert ECR().endpoint_url == "https://ecr.dev.example.com"  # profile endpoint_url
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://all-services.example.com")
    assert ECR().endpoint_url == "https://all-services.example.com"
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", "https://ecr-only.example.com/")
    assert ECR().endpoint_url == "https://ecr-only.example.com"  # beats AWS_ENDPOINT_URL
    assert ECR(endpoint_url="http://127.0.0.1:9").endpoint_url == "http://127.0.0.1:9"


def test_environment_endpoint_is_where_requests_go(
    stub: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_credentials(monkeypatch)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # would be refused
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", stub.url)
    with ECR() as ecr:
        ecr.describe_registry()
    assert stub.operations() == ["DescribeRegistry"]


def test_async_client_resolves_the_same_way(
    stub: ScriptedServer, monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    write_credentials(clean_environment, SHARED)
    write_config(clean_environment, CONFIG)
    monkeypatch.setenv("AWS_PROFILE", "dev")
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", stub.url)

    async def run() -> str:
        async with AsyncECR() as ecr:
            await ecr.describe_registry()
            return ecr.region

    assert asyncio.run(run()) == "ap-southeast-2"
    verified = stub.requests[-1].verify(SECRETS)
    assert verified.access_key_id == "AKIASHAREDDEV0000001"
    assert verified.session_token == "dev-session-token"
    assert verified.region == "ap-southeast-2"
