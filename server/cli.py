"""The `bitmatch` command line: one group per package, assembled here (codec <- worker <- server)."""

import click

from codec.cli import codec_group


@click.group()
@click.version_option(package_name="bitmatch")
def cli() -> None:
    """bitmatch: cross-device interoperability test harness for learned image codecs."""


cli.add_command(codec_group)


def main() -> None:
    cli()
