"""``openecr`` commands. ``serve`` takes one option per field of ``Settings``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import click

from openecr.cli._admin_commands import fsck, gc, lifecycle
from openecr.cli._ecr_commands import image, lifecycle_policy, login, repository
from openecr.config import ConfigError, Settings, resolve_settings

__all__ = ["main"]


@click.group()
@click.version_option(package_name="openecr")
def main() -> None:
    """openecr: an Amazon ECR-compatible registry and SDK."""


def _settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Adds ``--<field>`` for every settings field; absent flags stay None so that the
    environment, the TOML file and the defaults can fill them in that order."""
    defaults = Settings()
    for f in reversed(fields(Settings)):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_text = f"{f.metadata.get('help', '')} [env: OPENECR_{f.name.upper()}"
        help_text += f"; default: {default}]" if default is not None else "]"
        if f.type == "bool":
            option = click.option(flag, f.name, is_flag=True, default=None, help=help_text)
        elif f.type == "int":
            option = click.option(flag, f.name, type=int, default=None, help=help_text)
        else:
            option = click.option(flag, f.name, type=str, default=None, help=help_text)
        command = option(command)
    return command


@main.command()
@_settings_options
def serve(**flags: Any) -> None:
    """Run the registry: the ECR API at POST / and the OCI API at /v2/, on one port."""
    from openecr.server.runner import configure_logging
    from openecr.server.runner import serve as run_server

    try:
        settings = resolve_settings(flags)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    configure_logging(settings.log_level)
    asyncio.run(run_server(settings))


for _command in (repository, image, login, lifecycle_policy, lifecycle, gc, fsck):
    main.add_command(_command)
