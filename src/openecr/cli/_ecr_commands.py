"""User commands built on the SDK: repositories, images, login, lifecycle policies.

Every command takes ``--endpoint-url``, ``--region``, ``--profile`` and ``--output``;
without them the endpoint, region and credentials come from the usual AWS environment.
Errors are printed as one line with the ECR error code, and the exit status is 1.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)

from openecr import models as m
from openecr.errors import ECRError, OpenECRError
from openecr.sdk import ECR
from openecr.sdk.images import (
    ProgressCallback,
    ProgressEvent,
    pull_image,
    push_image,
)

__all__ = ["image", "lifecycle_policy", "login", "repository"]

F = TypeVar("F", bound=Callable[..., Any])


def client_options(command: F) -> F:
    """Adds the options that say where and as whom to call ECR."""
    for option in reversed(
        [
            click.option(
                "--endpoint-url", help="ECR endpoint (default: from AWS_ENDPOINT_URL...)."
            ),
            click.option("--region", help="AWS region (default: from AWS_REGION...)."),
            click.option("--profile", help="Profile of the shared AWS config files."),
            click.option(
                "--output",
                "output_format",
                type=click.Choice(["text", "json"]),
                default="text",
                show_default=True,
                help="Output format.",
            ),
        ]
    ):
        command = option(command)
    return command


@contextmanager
def ecr_client(options: dict[str, Any]) -> Iterator[ECR]:
    """An SDK client from the command's options; SDK errors become one-line CLI errors."""
    try:
        with ECR(
            endpoint_url=options.get("endpoint_url"),
            region=options.get("region"),
            profile=options.get("profile"),
        ) as ecr:
            yield ecr
    except ECRError as error:
        raise click.ClickException(f"{error.code}: {error.message}") from None
    except OpenECRError as error:
        raise click.ClickException(str(error)) from None


def emit(options: dict[str, Any], result: Any, text: Callable[[], str]) -> None:
    """Prints ``result`` as JSON (wire names, like the AWS CLI) or as ``text()``."""
    if options.get("output_format") == "json":
        if isinstance(result, msgspec.Struct) and hasattr(result, "response_metadata"):
            result = msgspec.structs.replace(result, response_metadata=None)
        click.echo(json.dumps(msgspec.to_builtins(result, enc_hook=str), indent=2))
    else:
        output = text()
        if output:
            click.echo(output)


def pop_client_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs.pop(k) for k in ("endpoint_url", "region", "profile", "output_format")}


def parse_image_reference(reference: str) -> tuple[str, str | None, str | None]:
    """``REPOSITORY:TAG`` or ``REPOSITORY@DIGEST`` -> (repository, tag, digest)."""
    if "@" in reference:
        repository, digest = reference.split("@", 1)
        return repository, None, digest
    repository, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return reference, "latest", None
    return repository, tag, None


def with_client(command: Callable[..., Any]) -> Callable[..., Any]:
    """Runs the command body with an SDK client built from the common options."""

    @functools.wraps(command)
    def run(**kwargs: Any) -> Any:
        options = pop_client_options(kwargs)
        with ecr_client(options) as ecr:
            return command(ecr, options, **kwargs)

    return run


# -- repository -----------------------------------------------------------------------------


@click.group()
def repository() -> None:
    """Create, list and delete repositories."""


@repository.command("create")
@click.argument("name")
@click.option("--immutable", is_flag=True, help="Make tags immutable.")
@click.option("--scan-on-push", is_flag=True, help="Scan images when they are pushed.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Resource tag.")
@client_options
@with_client
def create_repository(
    ecr: ECR,
    options: dict[str, Any],
    name: str,
    immutable: bool,
    scan_on_push: bool,
    tags: tuple[str, ...],
) -> None:
    """Create the repository NAME."""
    resource_tags = []
    for item in tags:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--tag")
        resource_tags.append(m.Tag(key=key, value=value))
    result = ecr.create_repository(
        repository_name=name,
        image_tag_mutability="IMMUTABLE" if immutable else "MUTABLE",
        image_scanning_configuration=m.ImageScanningConfiguration(scan_on_push=scan_on_push),
        tags=resource_tags or None,
    )
    assert result.repository is not None
    emit(options, result, lambda: result.repository.repository_uri or "")  # type: ignore[union-attr]


@repository.command("list")
@client_options
@with_client
def list_repositories(ecr: ECR, options: dict[str, Any]) -> None:
    """List the repositories of the registry."""
    repositories = list(ecr.iter_describe_repositories())
    emit(
        options,
        m.DescribeRepositoriesResponse(repositories=repositories),
        lambda: "\n".join(f"{r.repository_name}\t{r.repository_uri}" for r in repositories),
    )


@repository.command("delete")
@click.argument("name")
@click.option("--force", is_flag=True, help="Delete even if the repository holds images.")
@client_options
@with_client
def delete_repository(ecr: ECR, options: dict[str, Any], name: str, force: bool) -> None:
    """Delete the repository NAME."""
    result = ecr.delete_repository(repository_name=name, force=force)
    emit(options, result, lambda: f"deleted {name}")


# -- image ------------------------------------------------------------------------------------


@click.group()
def image() -> None:
    """Push, pull, list and delete images."""


@image.command("list")
@click.argument("repository_name", metavar="REPOSITORY")
@client_options
@with_client
def list_images(ecr: ECR, options: dict[str, Any], repository_name: str) -> None:
    """List the images of REPOSITORY: digest, tags, size and push time."""
    details = list(ecr.iter_describe_images(repository_name=repository_name))
    emit(
        options,
        m.DescribeImagesResponse(image_details=details),
        lambda: "\n".join(
            f"{d.image_digest}\t{','.join(d.image_tags or []) or '<untagged>'}\t"
            f"{d.image_size_in_bytes}"
            for d in details
        ),
    )


@image.command("delete")
@click.argument("reference", metavar="REPOSITORY:TAG|REPOSITORY@DIGEST")
@client_options
@with_client
def delete_image(ecr: ECR, options: dict[str, Any], reference: str) -> None:
    """Delete a tag, or with @DIGEST the image and all its tags."""
    repository_name, tag, digest = parse_image_reference(reference)
    result = ecr.batch_delete_image(
        repository_name=repository_name,
        image_ids=[m.ImageIdentifier(image_tag=tag, image_digest=digest)],
    )
    if result.failures:
        failure = result.failures[0]
        raise click.ClickException(f"{failure.failure_code}: {failure.failure_reason}")
    emit(options, result, lambda: f"deleted {reference}")


@contextmanager
def progress_bars(options: dict[str, Any]) -> Iterator[ProgressCallback | None]:
    """A progress callback drawing one bar per blob on stderr (text output on a terminal)."""
    console = Console(stderr=True)
    if options.get("output_format") == "json" or not console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[state]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[str, TaskID] = {}

        def update(event: ProgressEvent) -> None:
            task = tasks.get(event.digest)
            if task is None:
                label = event.digest.removeprefix("sha256:")[:12]
                task = tasks[event.digest] = progress.add_task(
                    label, total=event.total, state=event.state.value
                )
            progress.update(task, completed=event.bytes_done, state=event.state.value)

        yield update


@image.command("push")
@click.argument("source", type=click.Path(exists=True), metavar="SOURCE")
@click.argument("target", metavar="REPOSITORY:TAG")
@click.option("--concurrency", default=4, show_default=True, help="Layers uploaded at once.")
@client_options
@with_client
def push(ecr: ECR, options: dict[str, Any], source: str, target: str, concurrency: int) -> None:
    """Push SOURCE (an OCI layout directory or a `docker save` tarball) to REPOSITORY:TAG
    through the ECR layer API."""
    repository_name, tag, _ = parse_image_reference(target)
    with progress_bars(options) as callback:
        result = push_image(
            ecr, Path(source), repository_name, tag, progress=callback, concurrency=concurrency
        )
    emit(
        options,
        result,
        lambda: (
            f"pushed {repository_name}:{tag}@{result.digest} "
            f"({len(result.layers_uploaded)} uploaded, {len(result.layers_skipped)} already there)"
        ),
    )


@image.command("pull")
@click.argument("reference", metavar="REPOSITORY:TAG|REPOSITORY@DIGEST")
@click.argument("destination", type=click.Path(file_okay=False), metavar="DEST")
@click.option("--concurrency", default=4, show_default=True, help="Blobs downloaded at once.")
@client_options
@with_client
def pull(
    ecr: ECR, options: dict[str, Any], reference: str, destination: str, concurrency: int
) -> None:
    """Pull an image into the OCI layout directory DEST (every blob digest-verified)."""
    repository_name, tag, digest = parse_image_reference(reference)
    with progress_bars(options) as callback:
        result = pull_image(
            ecr,
            repository_name,
            digest or tag or "latest",
            Path(destination),
            progress=callback,
            concurrency=concurrency,
        )
    emit(options, result, lambda: f"pulled {reference} ({result.digest}) into {destination}")


# -- login ------------------------------------------------------------------------------------


@click.command()
@click.option("--docker-config", type=click.Path(dir_okay=False), help="config.json to write.")
@client_options
@with_client
def login(ecr: ECR, options: dict[str, Any], docker_config: str | None) -> None:
    """Store a registry token in the docker config.json (like `docker login`)."""
    from openecr.sdk.docker_auth import docker_login

    host = docker_login(ecr, config_path=docker_config)
    emit(options, {"registry": host}, lambda: f"Login Succeeded: {host}")


# -- lifecycle policy -------------------------------------------------------------------------


@click.group("lifecycle-policy")
def lifecycle_policy() -> None:
    """Get, put and preview lifecycle policies."""


@lifecycle_policy.command("get")
@click.argument("repository_name", metavar="REPOSITORY")
@client_options
@with_client
def get_lifecycle_policy(ecr: ECR, options: dict[str, Any], repository_name: str) -> None:
    """Print the lifecycle policy of REPOSITORY."""
    result = ecr.get_lifecycle_policy(repository_name=repository_name)
    emit(options, result, lambda: result.lifecycle_policy_text or "")


@lifecycle_policy.command("put")
@click.argument("repository_name", metavar="REPOSITORY")
@click.argument("policy_file", type=click.File("r"), metavar="POLICY.json")
@client_options
@with_client
def put_lifecycle_policy(
    ecr: ECR, options: dict[str, Any], repository_name: str, policy_file: Any
) -> None:
    """Set the lifecycle policy of REPOSITORY from a JSON file ('-' for stdin)."""
    result = ecr.put_lifecycle_policy(
        repository_name=repository_name, lifecycle_policy_text=policy_file.read()
    )
    emit(options, result, lambda: f"lifecycle policy set on {repository_name}")


@lifecycle_policy.command("preview")
@click.argument("repository_name", metavar="REPOSITORY")
@click.option(
    "--policy", "policy_file", type=click.File("r"), help="Policy to try (default: the saved one)."
)
@client_options
@with_client
def preview_lifecycle_policy(
    ecr: ECR, options: dict[str, Any], repository_name: str, policy_file: Any
) -> None:
    """Show which images a lifecycle policy would expire now, deleting nothing."""
    ecr.start_lifecycle_policy_preview(
        repository_name=repository_name,
        lifecycle_policy_text=policy_file.read() if policy_file else None,
    )
    ecr.wait_for_lifecycle_policy_preview_complete(repository_name=repository_name, delay=1)
    pages = list(ecr.get_lifecycle_policy_preview_pages(repository_name=repository_name))
    results = [r for page in pages for r in page.preview_results or []]
    summary = pages[-1].summary
    combined = msgspec.structs.replace(pages[-1], preview_results=results, next_token=None)
    emit(
        options,
        combined,
        lambda: "\n".join(
            [
                *(
                    f"{r.image_digest}\t{','.join(r.image_tags or []) or '<untagged>'}\t"
                    f"rule {r.applied_rule_priority}"
                    for r in results
                ),
                f"{summary.expiring_image_total_count if summary else 0} image(s) would expire",
            ]
        ),
    )
