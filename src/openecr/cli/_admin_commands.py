"""Operator commands that act on a server's storage directly: gc, lifecycle, fsck.

They take the same storage settings as ``openecr serve`` (``--data-dir``,
``--database-url``, ``OPENECR_*``, ``--config``) and may run while the server runs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from openecr.config import ConfigError, Settings, resolve_settings
from openecr.errors import InvalidParameterError
from openecr.server.services import Services
from openecr.services.fsck import check_storage
from openecr.services.lifecycle import ImageFacts, evaluate_lifecycle_policy, parse_lifecycle_policy

__all__ = ["fsck", "gc", "lifecycle"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_STORAGE_FIELDS = (
    "blob_store",
    "s3_endpoint_url",
    "s3_region",
    "s3_access_key_id",
    "s3_secret_access_key",
    "data_dir",
    "database_url",
    "account_id",
    "config",
    "gc_grace",
    "upload_expiry",
    "gc_untagged",
)


def storage_options(command: F) -> F:
    """The subset of ``serve``'s settings that locate and tune the storage."""
    for name, kind, help_text in reversed(
        [
            ("data_dir", str, "Data directory of the server."),
            ("database_url", str, "Metadata database of the server."),
            ("config", str, "The server's TOML settings file."),
            ("blob_store", str, "The server's blob store, e.g. s3://BUCKET/PREFIX."),
            ("s3_endpoint_url", str, "S3 endpoint of that blob store."),
            ("s3_region", str, "S3 region of that blob store."),
            ("s3_access_key_id", str, "S3 access key."),
            ("s3_secret_access_key", str, "S3 secret key."),
            ("gc_grace", int, "Seconds an unreferenced blob is kept (default 3600)."),
            ("upload_expiry", int, "Seconds after which an untouched upload is abandoned."),
        ]
    ):
        command = click.option(
            "--" + name.replace("_", "-"), name, type=kind, default=None, help=help_text
        )(command)
    return command


def _settings(flags: dict[str, Any]) -> Settings:
    try:
        return resolve_settings({k: v for k, v in flags.items() if k in _STORAGE_FIELDS})
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _with_services(settings: Settings, work: Callable[[Services], Awaitable[T]]) -> T:
    async def run() -> T:
        services = await Services.start(settings)
        try:
            return await work(services)
        finally:
            await services.close()

    return asyncio.run(run())


@click.command()
@click.option("--dry-run", is_flag=True, help="Report what would be reclaimed, delete nothing.")
@click.option(
    "--untagged",
    is_flag=True,
    default=None,
    help="Also delete untagged images no index references.",
)
@storage_options
def gc(dry_run: bool, untagged: bool | None, **flags: Any) -> None:
    """Reclaim unreferenced blobs, abandoned uploads and (optionally) untagged images."""
    settings = _settings({**flags, "gc_untagged": untagged})
    report = _with_services(settings, lambda services: services.gc.run(dry_run=dry_run))
    click.echo(json.dumps(report.as_dict(), indent=2))


@click.group()
def lifecycle() -> None:
    """Run lifecycle policies now, or simulate one offline."""


@lifecycle.command("run")
@click.option("--repository", help="Only this repository.")
@click.option("--dry-run", is_flag=True, help="Report what would expire, delete nothing.")
@storage_options
def lifecycle_run(repository: str | None, dry_run: bool, **flags: Any) -> None:
    """Apply every repository's lifecycle policy now."""
    settings = _settings(flags)
    report = _with_services(
        settings, lambda services: services.lifecycle.run(repository=repository, dry_run=dry_run)
    )
    click.echo(json.dumps(report.as_dict(), indent=2))


def _timestamp(value: Any, what: str) -> datetime:
    """Epoch seconds (number or numeric string) or ISO 8601, as the AWS CLI prints them."""
    if isinstance(value, bool):
        raise click.ClickException(f"{what}: not a timestamp: {value!r}")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise click.ClickException(f"{what}: not a timestamp: {value!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise click.ClickException(f"{what}: not a timestamp: {value!r}")


def _load_images(path: Path) -> list[tuple[ImageFacts, Any]]:
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"{path}: cannot read the images file: {exc}") from None
    details = document.get("imageDetails") if isinstance(document, dict) else None
    if not isinstance(details, list):
        raise click.ClickException(
            f'{path}: expected {{"imageDetails": [...]}} as describe-images prints'
        )
    images = []
    for position, detail in enumerate(details):
        where = f"{path}: imageDetails[{position}]"
        if not isinstance(detail, dict) or not isinstance(detail.get("imageDigest"), str):
            raise click.ClickException(f"{where}: needs an imageDigest")
        tags = detail.get("imageTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise click.ClickException(f"{where}: imageTags must be a list of strings")
        if "imagePushedAt" not in detail:
            raise click.ClickException(f"{where}: needs imagePushedAt")
        pushed = _timestamp(detail["imagePushedAt"], f"{where}.imagePushedAt")
        images.append(
            (ImageFacts(detail["imageDigest"], tuple(tags), pushed), detail["imagePushedAt"])
        )
    return images


@lifecycle.command("simulate")
@click.option(
    "--policy", "policy_path", required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option(
    "--images", "images_path", required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option("--now", help="Evaluation time: epoch seconds or ISO 8601 (default: now).")
def lifecycle_simulate(policy_path: Path, images_path: Path, now: str | None) -> None:
    """Evaluate POLICY against IMAGES (what `aws ecr describe-images` prints), offline.

    Prints what GetLifecyclePolicyPreview would return, as JSON.
    """
    try:
        policy = parse_lifecycle_policy(policy_path.read_text())
    except OSError as exc:
        raise click.ClickException(f"{policy_path}: cannot read the policy: {exc}") from None
    except InvalidParameterError as exc:
        raise click.ClickException(f"{policy_path}: {exc.message}") from None
    images = _load_images(images_path)
    pushed_as_given = {facts.digest: given for facts, given in images}
    moment = _timestamp(now, "--now") if now is not None else datetime.now(UTC)
    expirations = evaluate_lifecycle_policy(policy, [facts for facts, _ in images], moment)
    # As in GetLifecyclePolicyPreview, an untagged image has no imageTags member.
    results = [
        {
            "imageDigest": e.image.digest,
            **({"imageTags": list(e.image.tags)} if e.image.tags else {}),
            "imagePushedAt": pushed_as_given[e.image.digest],
            "action": {"type": "EXPIRE"},
            "appliedRulePriority": e.rule_priority,
        }
        for e in expirations
    ]
    click.echo(
        json.dumps(
            {"previewResults": results, "summary": {"expiringImageTotalCount": len(results)}},
            indent=2,
        )
    )


@click.command()
@click.option("--repair", is_flag=True, help="Quarantine corrupt blobs instead of serving them.")
@storage_options
def fsck(repair: bool, **flags: Any) -> None:
    """Verify every blob's digest and every manifest's references."""
    settings = _settings(flags)
    report = _with_services(settings, lambda s: check_storage(s.store, s.blobs, repair=repair))
    click.echo(json.dumps(report.as_dict(), indent=2))
    if not report.ok:
        raise SystemExit(1)
