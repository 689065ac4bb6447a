"""The `rrg-train` command. Heavy imports stay inside subcommands so `--help` is instant."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Train and export RRG speaker adapters (install the `train` extra)."""


if __name__ == "__main__":
    main()
