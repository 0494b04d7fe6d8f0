"""ARNs and URIs of ECR resources, built one way everywhere."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from openecr.errors import InvalidParameterError

__all__ = ["RepositoryArn", "parse_repository_arn", "registry_host", "repository_arn"]

_REPOSITORY_ARN = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):ecr:(?P<region>[0-9a-z-]{2,25}):"
    r"(?P<account>[0-9]{12}):repository/(?P<name>.+)"
)


def repository_arn(region: str, registry_id: str, name: str) -> str:
    return f"arn:aws:ecr:{region}:{registry_id}:repository/{name}"


def registry_host(public_url: str) -> str:
    """``host[:port]`` of the public URL: what docker and skopeo put before the image name."""
    return urlsplit(public_url).netloc


@dataclass(frozen=True, slots=True)
class RepositoryArn:
    region: str
    registry_id: str
    repository_name: str


def parse_repository_arn(arn: str) -> RepositoryArn:
    """Reads a repository ARN; anything else is ECR's 'Invalid ARN' parameter error."""
    match = _REPOSITORY_ARN.fullmatch(arn)
    if match is None:
        raise InvalidParameterError(
            "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN'"
        )
    return RepositoryArn(match["region"], match["account"], match["name"])
