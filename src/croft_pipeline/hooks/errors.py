"""Why a run cannot start now, as Kedro's CLI prints it: one ``Error: <message>`` line and exit
status 1 (a click exception, as ``config.loader.ConfigError``), not a traceback."""

from __future__ import annotations

import click


class RunRefused(click.ClickException):
    """Another run (Kedro's or DVC's) holds what this run needs; nothing was written."""
