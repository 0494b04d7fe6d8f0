"""``docker-credential-openecr``: a Docker credential helper backed by GetAuthorizationToken.

Configure it for a registry in the Docker (or containers) ``config.json``::

    {"credHelpers": {"123456789012.dkr.ecr.us-east-1.amazonaws.com": "openecr"}}

and Docker, podman, skopeo and buildah run ``docker-credential-openecr get`` whenever they
need credentials for that host. The protocol (docker-credential-helpers):

* ``get``: the server URL on stdin; prints ``{"ServerURL", "Username": "AWS", "Secret"}``.
  A host that is neither the registry of the configured endpoint nor an AWS ECR registry
  host gets ``credentials not found in native keychain`` (and exit 1), as the protocol
  wants, so a global ``credsStore`` never hands an ECR token to another registry.
* ``store``: reads and ignores the credentials (tokens come from the ECR API); exit 0.
* ``erase``: the server URL on stdin; forgets the cached tokens for it.
* ``list``: prints ``{"<server URL>": "AWS", ...}`` for the cached, unexpired tokens.

Endpoint, region and credentials come from the usual AWS environment (``AWS_*`` variables,
profiles; see ``openecr.sdk._config``); for an AWS ECR host the region is the host's. Tokens
are cached in ``$XDG_CACHE_HOME/openecr/docker-credentials.json`` (mode 0600) by registry host
and access key, and reused until 15 minutes before they expire. Errors go to stderr with a
non-zero exit.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from openecr.errors import OpenECRError
from openecr.sdk._client import ECR
from openecr.sdk.docker_auth import registry_host
from openecr.sdk.images._files import write_atomically

__all__ = ["CACHE_MARGIN_SECONDS", "NOT_FOUND_MESSAGE", "cache_path", "main"]

CACHE_MARGIN_SECONDS = 15 * 60
NOT_FOUND_MESSAGE = "credentials not found in native keychain"
USERNAME = "AWS"
# The registry hosts of AWS ECR (as amazon-ecr-credential-helper recognizes them).
_ECR_HOST = re.compile(
    r"(?P<account>\d{12})\.dkr[.-]ecr(?:-fips)?\.(?P<region>[a-zA-Z0-9][a-zA-Z0-9_-]*)\."
    r"(?:amazonaws\.com(?:\.cn)?|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)"
)


class _NotFound(Exception):
    pass


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "openecr" / "docker-credentials.json"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serializes the cache's read-modify-write across helper processes (POSIX)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _load(path: Path) -> dict[str, dict[str, Any]]:
    try:
        document = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return {}  # no cache yet, or a damaged one: start afresh
    entries = document.get("entries") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        return {}
    return {k: v for k, v in entries.items() if isinstance(v, dict)}


def _save(path: Path, entries: dict[str, dict[str, Any]]) -> None:
    document = {"version": 1, "entries": entries}
    write_atomically(path, json.dumps(document, indent=1).encode(), mode=0o600)


def _fresh(entry: dict[str, Any], now: float) -> bool:
    expires = entry.get("expiresAt")
    return isinstance(expires, int | float) and expires - CACHE_MARGIN_SECONDS > now


def _password(token: str) -> str:
    try:
        user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise OpenECRError("the authorization token is not base64 of AWS:<password>") from None
    if user != USERNAME or not password:
        raise OpenECRError("the authorization token is not base64 of AWS:<password>")
    return password


def _read_server_url(stdin: IO[str]) -> str:
    server_url = stdin.read().strip()
    if not server_url:
        raise OpenECRError("no server URL on stdin")
    return server_url


def _get(server_url: str) -> dict[str, str]:
    host = registry_host(server_url)
    aws_host = _ECR_HOST.fullmatch(host.split(":", 1)[0])
    client = ECR(region=aws_host["region"] if aws_host else None, max_attempts=3)
    access_key = client._core.config.credentials.access_key_id
    key = f"{host} {access_key}"
    path = cache_path()
    with client, _locked(path):
        entries = _load(path)
        now = time.time()
        entry = entries.get(key)
        if entry is None or not _fresh(entry, now) or not isinstance(entry.get("token"), str):
            response = client.get_authorization_token(
                registry_ids=[aws_host["account"]] if aws_host else None
            )
            data = next(iter(response.authorization_data or []), None)
            if data is None or not data.authorization_token or not data.proxy_endpoint:
                raise OpenECRError("GetAuthorizationToken returned no token")
            if not aws_host and registry_host(data.proxy_endpoint) != host:
                raise _NotFound  # another registry's host: never hand it this token
            entry = {
                "serverURL": server_url,
                "host": host,
                "accessKeyId": access_key,
                "token": data.authorization_token,
                "expiresAt": data.expires_at,
                "proxyEndpoint": data.proxy_endpoint,
            }
            fresh = {k: v for k, v in entries.items() if _fresh(v, now)}
            if _fresh(entry, now):
                fresh[key] = entry
            if fresh != entries:
                _save(path, fresh)
    return {"ServerURL": server_url, "Username": USERNAME, "Secret": _password(entry["token"])}


def _erase(server_url: str) -> None:
    host = registry_host(server_url)
    path = cache_path()
    with _locked(path):
        entries = _load(path)
        kept = {k: v for k, v in entries.items() if v.get("host") != host}
        if kept != entries:
            _save(path, kept)


def _list() -> dict[str, str]:
    now = time.time()
    return {
        str(entry.get("serverURL") or entry.get("host")): USERNAME
        for entry in _load(cache_path()).values()
        if _fresh(entry, now)
    }


def main(argv: Sequence[str] | None = None) -> int:
    """The ``docker-credential-openecr`` command; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: docker-credential-openecr get|store|erase|list|version\n")
        return 1
    action = args[0]
    try:
        if action == "get":
            json.dump(_get(_read_server_url(sys.stdin)), sys.stdout)
        elif action == "store":
            sys.stdin.read()
        elif action == "erase":
            _erase(_read_server_url(sys.stdin))
        elif action == "list":
            json.dump(_list(), sys.stdout)
        elif action in ("version", "--version"):
            from openecr import __version__

            sys.stdout.write(f"docker-credential-openecr (openecr {__version__})\n")
        else:
            sys.stderr.write(f"docker-credential-openecr: unknown action {action!r}\n")
            return 1
    except _NotFound:
        sys.stdout.write(NOT_FOUND_MESSAGE + "\n")
        return 1
    except (OpenECRError, OSError) as exc:
        sys.stderr.write(f"docker-credential-openecr: {exc}\n")
        return 1
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
