"""ECR operations on the registry as a whole: policy, scanning, replication, auth tokens."""

from __future__ import annotations

import base64
import time
from typing import Any

import msgspec

from openecr import models as m
from openecr.ecr_api._operations import operation
from openecr.server.services import Services
from openecr.services.context import CallerContext
from openecr.services.naming import repository_arn

__all__: list[str] = []


@operation("PutRegistryPolicy")
async def put_registry_policy(
    services: Services, caller: CallerContext, request: m.PutRegistryPolicyRequest
) -> m.PutRegistryPolicyResponse:
    policy = await services.registry.put_registry_policy(caller, request.policy_text or "")
    return m.PutRegistryPolicyResponse(registry_id=caller.account_id, policy_text=policy)


@operation("GetRegistryPolicy")
async def get_registry_policy(
    services: Services, caller: CallerContext, request: m.GetRegistryPolicyRequest
) -> m.GetRegistryPolicyResponse:
    policy = await services.registry.get_registry_policy(caller)
    return m.GetRegistryPolicyResponse(registry_id=caller.account_id, policy_text=policy)


@operation("DeleteRegistryPolicy")
async def delete_registry_policy(
    services: Services, caller: CallerContext, request: m.DeleteRegistryPolicyRequest
) -> m.DeleteRegistryPolicyResponse:
    policy = await services.registry.delete_registry_policy(caller)
    return m.DeleteRegistryPolicyResponse(registry_id=caller.account_id, policy_text=policy)


@operation("PutRegistryScanningConfiguration")
async def put_registry_scanning_configuration(
    services: Services, caller: CallerContext, request: m.PutRegistryScanningConfigurationRequest
) -> m.PutRegistryScanningConfigurationResponse:
    rules: list[dict[str, Any]] = msgspec.to_builtins(request.rules or [])
    configuration = await services.registry.put_scanning_configuration(
        caller, scan_type=request.scan_type, rules=rules
    )
    return m.PutRegistryScanningConfigurationResponse(
        registry_scanning_configuration=msgspec.convert(
            configuration, m.RegistryScanningConfiguration
        )
    )


@operation("GetRegistryScanningConfiguration")
async def get_registry_scanning_configuration(
    services: Services, caller: CallerContext, request: m.GetRegistryScanningConfigurationRequest
) -> m.GetRegistryScanningConfigurationResponse:
    configuration = await services.registry.get_scanning_configuration(caller)
    return m.GetRegistryScanningConfigurationResponse(
        registry_id=caller.account_id,
        scanning_configuration=msgspec.convert(configuration, m.RegistryScanningConfiguration),
    )


@operation("BatchGetRepositoryScanningConfiguration")
async def batch_get_repository_scanning_configuration(
    services: Services,
    caller: CallerContext,
    request: m.BatchGetRepositoryScanningConfigurationRequest,
) -> m.BatchGetRepositoryScanningConfigurationResponse:
    settings, missing = await services.registry.repository_scanning_settings(
        caller, request.repository_names or []
    )
    return m.BatchGetRepositoryScanningConfigurationResponse(
        scanning_configurations=[
            m.RepositoryScanningConfiguration(
                repository_arn=repository_arn(caller.region, s.registry_id, s.repository_name),
                repository_name=s.repository_name,
                scan_on_push=s.scan_on_push,
                scan_frequency=s.scan_frequency,
                applied_scan_filters=msgspec.convert(
                    s.applied_filters, list[m.ScanningRepositoryFilter]
                ),
            )
            for s in settings
        ],
        failures=[
            m.RepositoryScanningConfigurationFailure(
                repository_name=name,
                failure_code="REPOSITORY_NOT_FOUND",
                failure_reason="REPOSITORY_NOT_FOUND",
            )
            for name in missing
        ],
    )


@operation("PutReplicationConfiguration")
async def put_replication_configuration(
    services: Services, caller: CallerContext, request: m.PutReplicationConfigurationRequest
) -> m.PutReplicationConfigurationResponse:
    configuration = await services.registry.put_replication_configuration(
        caller, msgspec.to_builtins(request.replication_configuration)
    )
    return m.PutReplicationConfigurationResponse(
        replication_configuration=msgspec.convert(configuration, m.ReplicationConfiguration)
    )


@operation("DescribeRegistry")
async def describe_registry(
    services: Services, caller: CallerContext, request: m.DescribeRegistryRequest
) -> m.DescribeRegistryResponse:
    configuration = await services.registry.describe_registry(caller)
    return m.DescribeRegistryResponse(
        registry_id=caller.account_id,
        replication_configuration=msgspec.convert(configuration, m.ReplicationConfiguration),
    )


@operation("GetAuthorizationToken")
async def get_authorization_token(
    services: Services, caller: CallerContext, request: m.GetAuthorizationTokenRequest
) -> m.GetAuthorizationTokenResponse:
    # The token is not scoped to a registry (the model deprecates registryIds); one entry per
    # requested id keeps the response shape AWS gives, all pointing at this server.
    registry_ids = list(dict.fromkeys(request.registry_ids or [caller.account_id]))
    claims = services.tokens.issue(
        account_id=caller.account_id, access_key_id=caller.access_key_id, now=time.time()
    )
    token = base64.b64encode(f"AWS:{services.tokens.encode(claims)}".encode()).decode()
    return m.GetAuthorizationTokenResponse(
        authorization_data=[
            m.AuthorizationData(
                authorization_token=token,
                expires_at=claims.expires_at,
                proxy_endpoint=services.public_url,
            )
            for _ in registry_ids
        ]
    )
