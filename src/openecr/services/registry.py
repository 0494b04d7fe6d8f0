"""Registry-wide settings: the registry policy, scanning and replication configurations.

The engines that act on the scanning and replication configurations come later; here the
configurations are validated, persisted and reported exactly as stored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from openecr.errors import InvalidParameterError, RegistryPolicyNotFoundError
from openecr.services.context import CallerContext
from openecr.services.iam_policy import validate_registry_policy
from openecr.services.scanning_filters import wildcard_filter_matches
from openecr.storage.metadata.store import MetadataStore

__all__ = [
    "DEFAULT_SCANNING_CONFIGURATION",
    "MAX_REPLICATION_DESTINATIONS",
    "RegistryService",
    "RepositoryScanningSettings",
]

DEFAULT_SCANNING_CONFIGURATION: dict[str, Any] = {"scanType": "BASIC", "rules": []}
MAX_REPLICATION_DESTINATIONS = 25
_FREQUENCIES_BY_SCAN_TYPE = {
    "BASIC": {"SCAN_ON_PUSH", "MANUAL"},
    "ENHANCED": {"SCAN_ON_PUSH", "CONTINUOUS_SCAN", "MANUAL"},
}
# When a repository matches several rules, the more thorough frequency applies.
_FREQUENCY_RANK = {"CONTINUOUS_SCAN": 3, "SCAN_ON_PUSH": 2, "MANUAL": 1}


@dataclass(frozen=True, slots=True)
class RepositoryScanningSettings:
    repository_name: str
    registry_id: str
    scan_on_push: bool
    scan_frequency: str
    applied_filters: list[dict[str, str]] = field(default_factory=list)


def _invalid(member: str, detail: str) -> InvalidParameterError:
    return InvalidParameterError(
        f"Invalid parameter at '{member}' failed to satisfy constraint: '{detail}'"
    )


class RegistryService:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    # -- registry policy ------------------------------------------------------------------

    async def put_registry_policy(self, caller: CallerContext, policy_text: str) -> str:
        validate_registry_policy(policy_text)
        async with self._store.write() as session:
            await session.update_registry(caller.account_id, policy_text=policy_text)
        return policy_text

    async def get_registry_policy(self, caller: CallerContext) -> str:
        async with self._store.read() as session:
            registry = await session.get_registry(caller.account_id)
        if registry.policy_text is None:
            raise self._policy_not_found(caller.account_id)
        return registry.policy_text

    async def delete_registry_policy(self, caller: CallerContext) -> str:
        async with self._store.write() as session:
            registry = await session.get_registry(caller.account_id)
            if registry.policy_text is None:
                raise self._policy_not_found(caller.account_id)
            await session.update_registry(caller.account_id, policy_text=None)
        return registry.policy_text

    @staticmethod
    def _policy_not_found(registry_id: str) -> RegistryPolicyNotFoundError:
        return RegistryPolicyNotFoundError(
            f"Registry policy does not exist in the registry with id '{registry_id}'"
        )

    # -- scanning configuration -----------------------------------------------------------

    async def put_scanning_configuration(
        self, caller: CallerContext, *, scan_type: str | None, rules: list[dict[str, Any]]
    ) -> dict[str, Any]:
        scan_type = scan_type or "BASIC"
        seen_frequencies: set[str] = set()
        for rule in rules:
            frequency = rule["scanFrequency"]
            if frequency not in _FREQUENCIES_BY_SCAN_TYPE[scan_type]:
                raise _invalid(
                    "rules",
                    f"scanFrequency {frequency} is not supported for scanType {scan_type}",
                )
            if frequency in seen_frequencies:
                raise _invalid("rules", f"Only one rule per scanFrequency: {frequency}")
            seen_frequencies.add(frequency)
        configuration = {"scanType": scan_type, "rules": rules}
        async with self._store.write() as session:
            await session.update_registry(
                caller.account_id, scanning_configuration=json.dumps(configuration)
            )
        return configuration

    async def get_scanning_configuration(self, caller: CallerContext) -> dict[str, Any]:
        async with self._store.read() as session:
            registry = await session.get_registry(caller.account_id)
        if registry.scanning_configuration is None:
            return dict(DEFAULT_SCANNING_CONFIGURATION)
        loaded: dict[str, Any] = json.loads(registry.scanning_configuration)
        return loaded

    async def repository_scanning_settings(
        self, caller: CallerContext, names: Sequence[str]
    ) -> tuple[list[RepositoryScanningSettings], list[str]]:
        """The effective scanning settings per repository, and the names that do not exist.

        Registry rules win over the legacy per-repository ``scanOnPush`` flag, which only
        applies while no registry rule matches the repository.
        """
        configuration = await self.get_scanning_configuration(caller)
        async with self._store.read() as session:
            found = await session.get_repositories(caller.account_id, list(dict.fromkeys(names)))
        settings: list[RepositoryScanningSettings] = []
        missing: list[str] = []
        for name in dict.fromkeys(names):
            repository = found.get(name)
            if repository is None:
                missing.append(name)
                continue
            frequency, applied = "MANUAL", []
            for rule in configuration["rules"]:
                matched = [
                    f
                    for f in rule["repositoryFilters"]
                    if wildcard_filter_matches(f["filter"], name)
                ]
                rank = _FREQUENCY_RANK[rule["scanFrequency"]]
                if matched and rank > _FREQUENCY_RANK[frequency]:
                    frequency, applied = rule["scanFrequency"], matched
            if frequency == "MANUAL" and repository.scan_on_push:
                frequency = "SCAN_ON_PUSH"
            settings.append(
                RepositoryScanningSettings(
                    repository_name=name,
                    registry_id=caller.account_id,
                    scan_on_push=frequency == "SCAN_ON_PUSH",
                    scan_frequency=frequency,
                    applied_filters=applied,
                )
            )
        return settings, missing

    # -- replication configuration --------------------------------------------------------

    async def put_replication_configuration(
        self, caller: CallerContext, configuration: dict[str, Any]
    ) -> dict[str, Any]:
        destinations: set[tuple[str, str]] = set()
        for rule in configuration["rules"]:
            for destination in rule["destinations"]:
                key = (destination["region"], destination["registryId"])
                if key == (caller.region, caller.account_id):
                    raise _invalid(
                        "replicationConfiguration",
                        "Replication destination cannot be the same as the source registry",
                    )
                destinations.add(key)
        if len(destinations) > MAX_REPLICATION_DESTINATIONS:
            raise _invalid(
                "replicationConfiguration",
                f"At most {MAX_REPLICATION_DESTINATIONS} unique destinations are allowed "
                "across all rules",
            )
        async with self._store.write() as session:
            await session.update_registry(
                caller.account_id, replication_configuration=json.dumps(configuration)
            )
        return configuration

    async def describe_registry(self, caller: CallerContext) -> dict[str, Any]:
        async with self._store.read() as session:
            registry = await session.get_registry(caller.account_id)
        if registry.replication_configuration is None:
            return {"rules": []}
        loaded: dict[str, Any] = json.loads(registry.replication_configuration)
        return loaded
