"""The server's settings: one typed object, resolved from four sources.

Precedence, highest first: command-line flag, ``OPENECR_<NAME>`` environment variable, the
optional TOML file (``--config`` / ``OPENECR_CONFIG``), the built-in default.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "Settings", "resolve_settings"]

_ACCOUNT_ID = re.compile(r"[0-9]{12}")
_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A setting has a value the server cannot start with."""


@dataclass(frozen=True)
class Settings:
    """Everything ``openecr serve`` can be told. Field docs double as ``--help`` texts."""

    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on."})
    port: int = field(default=5000, metadata={"help": "TCP port for the ECR API and /v2/."})
    data_dir: Path = field(
        default=Path("./openecr-data"),
        metadata={"help": "Directory for the embedded database, blobs and generated keys."},
    )
    database_url: str | None = field(
        default=None,
        metadata={
            "help": "Metadata database: sqlite:///PATH or postgresql://USER@HOST:PORT/DB. "
            "Default: SQLite in the data directory."
        },
    )
    # Fewer concurrent transactions than requests in flight waste less of the database
    # server's CPU on contention and switching: on 2 cores, 10 connections served 20-25%
    # more pushes and listings than 30 did.
    database_pool_size: int = field(
        default=10,
        metadata={
            "help": "PostgreSQL connections one server process runs its queries on, at most "
            "(two to four per database core, shared by all replicas, is a good start)."
        },
    )
    public_url: str | None = field(
        default=None,
        metadata={
            "help": "Externally reachable base URL of this server, used in repositoryUri "
            "and proxyEndpoint. Default: http://HOST:PORT."
        },
    )
    account_id: str = field(
        default="000000000000",
        metadata={"help": "The default account (registryId), 12 digits."},
    )
    region: str = field(
        default="us-east-1",
        metadata={"help": "Region used where a request carries none (e.g. /v2/ requests)."},
    )
    access_key_id: str | None = field(
        default=None,
        metadata={"help": "Access key id accepted for the default account."},
    )
    secret_access_key: str | None = field(
        default=None,
        metadata={"help": "Secret access key paired with --access-key-id."},
    )
    insecure_accept_any_credentials: bool = field(
        default=False,
        metadata={
            "help": "INSECURE, for test harnesses: accept any SigV4 signature and map it to "
            "the default account. /v2/ still requires a token from GetAuthorizationToken."
        },
    )
    blob_store: str | None = field(
        default=None,
        metadata={
            "help": "Where blobs live: s3://BUCKET[/PREFIX] for S3-compatible storage. "
            "Default: the filesystem under --data-dir."
        },
    )
    s3_endpoint_url: str | None = field(
        default=None,
        metadata={"help": "S3 endpoint (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, AWS)."},
    )
    s3_region: str | None = field(
        default=None, metadata={"help": "S3 region (default: AWS_REGION, AWS_DEFAULT_REGION)."}
    )
    s3_access_key_id: str | None = field(
        default=None, metadata={"help": "S3 access key (default: the AWS environment)."}
    )
    s3_secret_access_key: str | None = field(
        default=None, metadata={"help": "S3 secret key (default: the AWS environment)."}
    )
    blob_redirect: bool = field(
        default=False,
        metadata={
            "help": "Answer /v2/ blob GETs and GetDownloadUrlForLayer with presigned S3 URLs "
            "instead of streaming the bytes through the server (S3 blob store only)."
        },
    )
    create_repository_on_push: bool = field(
        default=False,
        metadata={
            "help": "Create a missing repository when an image is pushed to it over /v2/ "
            "(ECR itself never does)."
        },
    )
    lifecycle_interval: int = field(
        default=3600,
        metadata={"help": "Seconds between lifecycle policy runs (0: never)."},
    )
    gc_interval: int = field(
        default=3600,
        metadata={"help": "Seconds between garbage collections (0: never)."},
    )
    gc_grace: int = field(
        default=3600,
        metadata={
            "help": "Seconds a blob may stay unreferenced before collection (a push links "
            "its layers before its manifest references them)."
        },
    )
    upload_expiry: int = field(
        default=86400,
        metadata={"help": "Seconds after which an untouched upload is abandoned."},
    )
    gc_untagged: bool = field(
        default=False,
        metadata={"help": "Let garbage collection delete untagged images no index references."},
    )
    log_level: str = field(default="info", metadata={"help": "debug, info, warning or error."})
    config: Path | None = field(
        default=None, metadata={"help": "Optional TOML file with any of these settings."}
    )

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'metadata.db').resolve()}"

    @property
    def effective_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    def validate(self) -> None:
        if not _ACCOUNT_ID.fullmatch(self.account_id):
            raise ConfigError(f"account_id must be 12 digits, got {self.account_id!r}")
        for name in ("lifecycle_interval", "gc_interval", "gc_grace", "upload_expiry"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")
        if self.database_pool_size < 1:
            size = self.database_pool_size
            raise ConfigError(f"database_pool_size must be at least 1, got {size}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be between 1 and 65535, got {self.port}")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ConfigError("access_key_id and secret_access_key must be given together")
        if self.log_level.lower() not in {"debug", "info", "warning", "error"}:
            raise ConfigError(f"log_level must be debug, info, warning or error: {self.log_level}")
        if self.blob_store is not None and not self.blob_store.startswith("s3://"):
            raise ConfigError(f"blob_store must be s3://BUCKET[/PREFIX], got {self.blob_store!r}")
        if self.blob_redirect and self.blob_store is None:
            raise ConfigError("blob_redirect needs an S3 blob store (--blob-store s3://...)")
        url = self.effective_database_url
        if not url.startswith(("sqlite:", "postgresql:", "postgres:", "postgresql+asyncpg:")):
            raise ConfigError(f"database_url must be sqlite:/// or postgresql://, got {url!r}")


def _coerce(name: str, target: Any, raw: Any) -> Any:
    """Converts an environment string or TOML value to the field's type."""
    if raw is None:
        return None
    if target in (bool, "bool"):
        if isinstance(raw, bool):
            return raw
        word = str(raw).strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    if target in (int, "int"):
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if target in ("Path", "Path | None"):
        return Path(str(raw))
    return str(raw)


def resolve_settings(
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Builds the settings from explicit flags (None = not given), env and the TOML file."""
    environ = os.environ if environ is None else environ
    env_values = {
        f.name: environ[f"OPENECR_{f.name.upper()}"]
        for f in fields(Settings)
        if f"OPENECR_{f.name.upper()}" in environ
    }
    config_path = flags.get("config") or env_values.get("config")
    file_values: dict[str, Any] = {}
    if config_path:
        try:
            with open(config_path, "rb") as handle:
                loaded = tomllib.load(handle)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_path} is not valid TOML: {exc}") from None
        known = {f.name for f in fields(Settings)}
        for key, value in loaded.items():
            name = key.replace("-", "_")
            if name not in known:
                raise ConfigError(f"config file {config_path}: unknown setting {key!r}")
            file_values[name] = value

    chosen: dict[str, Any] = {}
    for f in fields(Settings):
        for source in (flags, env_values, file_values):
            if source.get(f.name) is not None:
                chosen[f.name] = _coerce(f.name, f.type, source[f.name])
                break
    settings = dataclasses.replace(Settings(), **chosen)
    settings.validate()
    return settings
