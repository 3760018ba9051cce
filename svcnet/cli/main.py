"""The `svcnet` command: one group, each subcommand in its own module."""

from __future__ import annotations

import importlib
import sys

import click

from svcnet import __version__

# name -> "module:attribute"; imported lazily so `svcnet validate` does not load fabric.
COMMANDS = {
    "validate": "svcnet.cli.describe:validate",
    "render": "svcnet.cli.describe:render",
    "get": "svcnet.cli.describe:get_cmd",
    "describe": "svcnet.cli.describe:describe",
    "diff": "svcnet.cli.diff:diff",
    "explain": "svcnet.cli.explain:explain",
    "lab": "svcnet.cli.lab:lab",
    "demo": "svcnet.cli.demo:demo",
    "playbook": "svcnet.cli.apply:playbook",
    "apply": "svcnet.cli.apply:apply",
    "verify": "svcnet.cli.verify:verify",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="svcnet")
def cli() -> None:
    """Kubernetes Services for plain Linux machines: kube-proxy's iptables rules, applied over SSH."""


def main() -> None:
    """Console entry point: no tracebacks for interrupts or closed pipes."""
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("svcnet: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)


if __name__ == "__main__":
    main()
