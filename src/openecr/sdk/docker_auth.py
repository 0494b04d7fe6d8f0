"""``docker login`` without docker: a registry token in the Docker ``config.json``.

``docker_login`` calls GetAuthorizationToken and stores ``{"auth": <authorizationToken>}``
(which is ``base64("AWS:" + password)``, exactly what ``docker login -u AWS`` stores) under
the registry host (``proxyEndpoint`` without its scheme) in ``auths``. The file is
``config_path``, else ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``; every
other entry and setting in it is kept, and it is replaced atomically with mode 0600. Docker,
podman, skopeo, buildah and crane all read it.

A ``credsStore`` (or a ``credHelpers`` entry for the host) in the file makes Docker ask that
helper instead of reading ``auths``; ``docker_login`` warns when it sees one.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from openecr.errors import OpenECRError
from openecr.models import GetAuthorizationTokenResponse
from openecr.sdk.images._files import write_atomically

if TYPE_CHECKING:
    from openecr.sdk._client import ECR, AsyncECR

__all__ = ["adocker_login", "default_config_path", "docker_login", "registry_host"]


def registry_host(endpoint: str) -> str:
    """``123456789012.dkr.ecr.us-east-1.amazonaws.com`` of
    ``https://123456789012.dkr.ecr.us-east-1.amazonaws.com/``; a bare host is kept."""
    text = endpoint.strip()
    if "://" in text:
        return urlsplit(text).netloc.lower()
    return text.split("/", 1)[0].lower()


def default_config_path() -> Path:
    """Where Docker keeps its client configuration."""
    directory = os.environ.get("DOCKER_CONFIG")
    base = Path(directory) if directory else Path.home() / ".docker"
    return base / "config.json"


def _read_config(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    if not raw.strip():
        return {}
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise OpenECRError(f"{path} is not valid JSON ({exc}); not overwriting it") from None
    if not isinstance(config, dict):
        raise OpenECRError(f"{path} is not a JSON object; not overwriting it")
    return config


def _store(
    response: GetAuthorizationTokenResponse, config_path: str | os.PathLike[str] | None
) -> str:
    data = next(iter(response.authorization_data or []), None)
    if data is None or not data.authorization_token or not data.proxy_endpoint:
        raise OpenECRError("GetAuthorizationToken returned no token")
    host = registry_host(data.proxy_endpoint)
    path = Path(config_path) if config_path is not None else default_config_path()
    config = _read_config(path)
    auths = config.get("auths")
    if not isinstance(auths, dict):
        auths = config["auths"] = {}
    auths[host] = {"auth": data.authorization_token}
    helpers = config.get("credHelpers")
    helper = helpers.get(host) if isinstance(helpers, dict) else None
    if helper or config.get("credsStore"):
        warnings.warn(
            f"{path} sets a credential helper ({helper or config['credsStore']!r}) that Docker "
            f"consults instead of the token stored for {host}",
            stacklevel=3,
        )
    write_atomically(path, json.dumps(config, indent="\t").encode() + b"\n", mode=0o600)
    return host


def docker_login(ecr: ECR, *, config_path: str | os.PathLike[str] | None = None) -> str:
    """Stores a fresh registry token for ``ecr``'s registry in the Docker config file;
    returns the registry host (what to prefix image names with)."""
    return _store(ecr.get_authorization_token(), config_path)


async def adocker_login(
    aecr: AsyncECR, *, config_path: str | os.PathLike[str] | None = None
) -> str:
    """The async twin of ``docker_login``."""
    return _store(await aecr.get_authorization_token(), config_path)
