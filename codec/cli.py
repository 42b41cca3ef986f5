"""`bitmatch codec ...` commands."""

import click


@click.group(name="codec")
def codec_group() -> None:
    """Codec library: tables, encode, decode, eval."""
