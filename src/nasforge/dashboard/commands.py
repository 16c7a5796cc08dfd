"""The ``dashboard`` subcommand of the CLI: ``register(subparsers)`` adds it."""

from __future__ import annotations

import argparse
from typing import Any

from nasforge.errors import ConfigError


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serve the live dashboard over the given study files and folders until Ctrl-C."""
    from nasforge.dashboard.app import serve

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, got {args.port}")
    if not 0.5 <= args.poll <= 600:
        raise ConfigError(f"--poll must be between 0.5 and 600 seconds, got {args.poll}")
    return serve(list(args.paths), host=args.host, port=args.port, poll_seconds=args.poll)


def register(subparsers: Any) -> None:
    """Add the ``dashboard`` subcommand to ``subparsers``."""
    dash = subparsers.add_parser(
        "dashboard", help="serve a live, read-only web page over studies (while they run)")
    dash.add_argument("paths", nargs="*", default=["studies"], metavar="STUDY.db|FOLDER",
                      help="study files and/or folders of studies (default: studies/)")
    dash.add_argument("--host", default="127.0.0.1",
                      help="address to listen on (default 127.0.0.1; others print a warning: "
                           "the page has no authentication)")
    dash.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    dash.add_argument("--poll", type=float, default=2.0,
                      help="seconds between the page's updates (default 2)")
    dash.set_defaults(func=cmd_dashboard)
