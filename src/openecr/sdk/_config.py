"""Where a client sends its requests and with which credentials, resolved as the AWS SDKs do.

Credentials: explicit arguments, then ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
(+ ``AWS_SESSION_TOKEN``), then the shared credentials file, then the config file, for the
profile from the argument, ``AWS_PROFILE`` or ``default``.
Region: argument, ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's ``region``.
Endpoint: argument, ``AWS_ENDPOINT_URL_ECR``, ``AWS_ENDPOINT_URL``, the profile's
``endpoint_url``, else ``https://api.ecr.<region>.amazonaws.com``.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from openecr.auth.sigv4 import Credentials
from openecr.errors import OpenECRError

__all__ = [
    "ConfigurationError",
    "ResolvedConfig",
    "resolve_config",
]


class ConfigurationError(OpenECRError):
    """The client cannot be configured (no credentials, no region, unknown profile)."""


@dataclass(frozen=True, slots=True)
class ResolvedConfig:
    region: str
    endpoint_url: str
    credentials: Credentials


def _read_ini(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    if path.is_file():
        parser.read(path)
    return parser


def _profile_sections(
    environ: Mapping[str, str], profile: str
) -> tuple[dict[str, str], dict[str, str]]:
    """The profile's sections of the shared credentials file and of the config file."""
    home = Path(environ.get("HOME", str(Path.home())))
    credentials_file = Path(
        environ.get("AWS_SHARED_CREDENTIALS_FILE", str(home / ".aws" / "credentials"))
    )
    config_file = Path(environ.get("AWS_CONFIG_FILE", str(home / ".aws" / "config")))
    credentials = _read_ini(credentials_file)
    config = _read_ini(config_file)
    config_section = "default" if profile == "default" else f"profile {profile}"
    return (
        dict(credentials[profile]) if credentials.has_section(profile) else {},
        dict(config[config_section]) if config.has_section(config_section) else {},
    )


def resolve_config(
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ResolvedConfig:
    env = os.environ if environ is None else environ
    profile_name = profile or env.get("AWS_PROFILE") or "default"
    shared, config = _profile_sections(env, profile_name)
    if profile_name != "default" and not shared and not config:
        raise ConfigurationError(f"The config profile ({profile_name}) could not be found")

    credentials: Credentials | None = None
    if access_key_id or secret_access_key:
        if not (access_key_id and secret_access_key):
            raise ConfigurationError("access_key_id and secret_access_key go together")
        credentials = Credentials(access_key_id, secret_access_key, session_token)
    elif profile is None and env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        credentials = Credentials(
            env["AWS_ACCESS_KEY_ID"],
            env["AWS_SECRET_ACCESS_KEY"],
            env.get("AWS_SESSION_TOKEN") or env.get("AWS_SECURITY_TOKEN"),
        )
    else:
        for section in (shared, config):
            if section.get("aws_access_key_id") and section.get("aws_secret_access_key"):
                credentials = Credentials(
                    section["aws_access_key_id"],
                    section["aws_secret_access_key"],
                    section.get("aws_session_token"),
                )
                break
    if credentials is None:
        raise ConfigurationError(
            "Unable to locate credentials: pass access_key_id/secret_access_key, set "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or configure a profile"
        )

    resolved_region = (
        region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or config.get("region")
    )
    if not resolved_region:
        raise ConfigurationError(
            "You must specify a region: pass region=, set AWS_REGION or AWS_DEFAULT_REGION, "
            "or set region in the profile"
        )
    endpoint = (
        endpoint_url
        or env.get("AWS_ENDPOINT_URL_ECR")
        or env.get("AWS_ENDPOINT_URL")
        or config.get("endpoint_url")
        or f"https://api.ecr.{resolved_region}.amazonaws.com"
    )
    return ResolvedConfig(resolved_region, endpoint.rstrip("/"), credentials)
