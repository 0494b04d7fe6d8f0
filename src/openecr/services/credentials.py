"""Access keys: which secret signs for which account.

Keys live in the metadata database so that every replica knows them. Lookups are cached
in memory because SigV4 verification needs the secret on every request.
"""

from __future__ import annotations

import os
import secrets
import string
import time
from dataclasses import dataclass
from pathlib import Path

from openecr.storage.metadata.records import AccessKeyRecord
from openecr.storage.metadata.store import DuplicateKeyError, MetadataStore

__all__ = ["AccessKeys", "BootstrapOutcome"]

_KEY_ID_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
CREDENTIALS_FILE = "admin-credentials"


@dataclass(frozen=True, slots=True)
class BootstrapOutcome:
    """What start-up did about credentials; the CLI turns it into a message."""

    key: AccessKeyRecord | None
    created: bool
    credentials_file: Path | None


def _new_access_key(account_id: str) -> AccessKeyRecord:
    key_id = "AKIA" + "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(16))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))
    return AccessKeyRecord(key_id, secret, account_id)


class AccessKeys:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self._cache: dict[str, AccessKeyRecord] = {}

    async def bootstrap(
        self,
        *,
        account_id: str,
        data_dir: Path,
        configured: AccessKeyRecord | None,
    ) -> BootstrapOutcome:
        """Makes sure at least one key exists.

        A configured key is registered for the default account. Without one, the first
        start creates an admin key pair and writes it, mode 0600, into the data directory.
        """
        if configured is not None:
            async with self._store.write() as session:
                existing = await session.get_access_key(configured.access_key_id)
                if existing is None:
                    await session.add_access_key(configured, time.time())
                elif existing != configured:
                    raise ValueError(
                        f"access key {configured.access_key_id} is already registered "
                        "with another secret or account"
                    )
            return BootstrapOutcome(configured, created=False, credentials_file=None)

        path = data_dir / CREDENTIALS_FILE
        async with self._store.write() as session:
            keys = await session.list_access_keys()
            if keys:
                return BootstrapOutcome(
                    None, created=False, credentials_file=path if path.exists() else None
                )
            key = _new_access_key(account_id)
            try:
                await session.add_access_key(key, time.time())
            except DuplicateKeyError:  # pragma: no cover - 80 random bits
                raise
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(
                f"AWS_ACCESS_KEY_ID={key.access_key_id}\n"
                f"AWS_SECRET_ACCESS_KEY={key.secret_access_key}\n"
                f"OPENECR_ACCOUNT_ID={key.account_id}\n"
            )
        os.chmod(path, 0o600)
        return BootstrapOutcome(key, created=True, credentials_file=path)

    async def find(self, access_key_id: str) -> AccessKeyRecord | None:
        cached = self._cache.get(access_key_id)
        if cached is not None:
            return cached
        async with self._store.read() as session:
            key = await session.get_access_key(access_key_id)
        if key is not None:
            self._cache[access_key_id] = key
        return key
