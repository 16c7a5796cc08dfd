"""The dashboard's web app (Starlette) and server (uvicorn).

Routes (all GET, all read-only):

- ``/``: the page (HTML shell; ``static/dashboard.js`` draws everything from the JSON below)
- ``/static/plotly.min.js``: the plotting library, served from the ``plotly`` package (offline)
- ``/static/dashboard.js``, ``/static/dashboard.css``: the page's own script and style
- ``/api/studies``: every study with its summary, or its one-line error
- ``/api/study/{id}``: one study's view (``data.study_view``)
- ``/api/study/{id}/trial/{n}``: one trial (``data.trial_view``)
- ``/api/study/{id}/trial/{n}/drawing.svg``: its network drawn as SVG

The page polls the JSON endpoints every ``poll_seconds`` seconds (default 2), so it follows a
running search without a reload. Text reaches the page only as JSON and is put into the page
as text (``textContent``), never as markup; the SVG drawing is shown as an ``<img>``, which
runs no script.
"""

from __future__ import annotations

import errno
import html
import math
import socket
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from nasforge.dashboard import data
from nasforge.errors import ConfigError, NasforgeError

try:  # the `dashboard` extra
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route
except ImportError:  # pragma: no cover - reported by require_extra()
    Starlette = None  # type: ignore[assignment,misc]

LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")

_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self' 'unsafe-inline'; script-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def require_extra() -> None:
    """Raise ``ConfigError`` (one line) when the ``dashboard`` extra is not installed."""
    missing = []
    for mod in ("starlette", "uvicorn", "plotly"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise ConfigError(f"the dashboard needs {', '.join(missing)}: "
                          "pip install 'nasforge[dashboard]'")


def plotly_js_path() -> Path:
    """The ``plotly.min.js`` bundled inside the plotly Python package."""
    path = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    if not path.is_file():
        raise ConfigError(f"plotly.min.js not found in the plotly package ({path})")
    return path


def _static(name: str) -> Path:
    return Path(str(resources.files("nasforge.dashboard") / "static" / name))


def _page(title: str, poll_seconds: float) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title>"
        "<link rel=\"stylesheet\" href=\"/static/dashboard.css\"></head>"
        f"<body data-poll=\"{float(poll_seconds):g}\">"
        "<header><a href=\"#/\" class=\"brand\">nasforge dashboard</a>"
        "<span id=\"crumbs\"></span><span id=\"live\" class=\"live\"></span></header>"
        "<main id=\"view\"><p class=\"muted\">loading…</p></main>"
        "<script src=\"/static/plotly.min.js\"></script>"
        "<script src=\"/static/dashboard.js\"></script></body></html>\n"
    )


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has no NaN; a
    diverged trial's loss curve holds them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _json(payload: Any, status: int = 200) -> "JSONResponse":
    return JSONResponse(finite(payload), status_code=status, headers=_SECURITY_HEADERS)


def _error(message: str, status: int) -> "JSONResponse":
    return _json({"error": message}, status)


def create_app(catalog: data.StudyCatalog, poll_seconds: float = 2.0) -> "Starlette":
    """The Starlette app serving ``catalog`` read-only."""
    require_extra()
    plotly_js = plotly_js_path()

    async def index(request: Request) -> Response:
        return HTMLResponse(_page("nasforge dashboard", poll_seconds), headers=_SECURITY_HEADERS)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "plotly.min.js":
            path = plotly_js
        elif name in ("dashboard.js", "dashboard.css"):
            path = _static(name)
        else:
            return _error("not found", 404)
        media = "text/css" if name.endswith(".css") else "text/javascript"
        return FileResponse(path, media_type=media, headers={"X-Content-Type-Options": "nosniff"})

    def _entry(request: Request) -> data.StudyEntry | Response:
        entry = catalog.get(request.path_params["sid"])
        if entry is None:
            return _error("no such study", 404)
        if entry.snapshot is None:
            return _error(entry.error or "not readable", 409)
        return entry

    def studies(request: Request) -> Response:
        out = [data.overview_item(e) for e in catalog.refresh()]
        return _json({"studies": out, "now": time.time()})

    def study(request: Request) -> Response:
        entry = _entry(request)
        if not isinstance(entry, data.StudyEntry):
            return entry
        assert entry.snapshot is not None
        view = data.study_view(entry.snapshot)
        view.update(id=entry.id, study_error=entry.error, now=time.time())
        return _json(view)

    def _number(request: Request) -> int | None:
        try:
            return int(request.path_params["n"])
        except ValueError:
            return None

    def trial(request: Request) -> Response:
        entry = _entry(request)
        if not isinstance(entry, data.StudyEntry):
            return entry
        assert entry.snapshot is not None
        n = _number(request)
        try:
            if n is None:
                raise NasforgeError("trial number must be an integer")
            view = data.trial_view(entry.snapshot, n)
        except NasforgeError as exc:
            return _error(str(exc), 404)
        view.update(id=entry.id, study_error=entry.error)
        return _json(view)

    def drawing(request: Request) -> Response:
        entry = _entry(request)
        if not isinstance(entry, data.StudyEntry):
            return entry
        assert entry.snapshot is not None
        n = _number(request)
        try:
            if n is None:
                raise NasforgeError("trial number must be an integer")
            svg = data.drawing_svg(entry.snapshot, n)
        except NasforgeError as exc:
            return _error(str(exc), 404)
        except Exception as exc:  # noqa: BLE001 - a genome the space rejects: one line
            return _error(f"cannot draw trial {n}: {type(exc).__name__}: {exc}", 422)
        return Response(svg, media_type="image/svg+xml",
                        headers={**_SECURITY_HEADERS, "Cache-Control": "max-age=3600"})

    routes = [
        Route("/", index),
        Route("/static/{name}", static),
        Route("/api/studies", studies),
        Route("/api/study/{sid}", study),
        Route("/api/study/{sid}/trial/{n}", trial),
        Route("/api/study/{sid}/trial/{n}/drawing.svg", drawing),
    ]
    return Starlette(routes=routes)


# ------------------------------------------------------------------ serving
def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port).

    Raises ``ConfigError`` (one line) when the port is in use or the host cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is in use; pick another with --port "
                              "(or --port 0 for a free one)") from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """The page's address for a bound socket."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def no_auth_warning(host: str) -> str | None:
    """The warning line for a host other than loopback (the page has no authentication)."""
    if host in LOOPBACK_HOSTS:
        return None
    return (f"warning: listening on {host}: the dashboard has no authentication; anyone who "
            "can reach this address can read these studies")


@dataclass
class DashboardServer:
    """A uvicorn server on a bound socket; ``run()`` blocks, ``should_exit`` stops it."""

    server: Any
    sock: socket.socket

    @property
    def url(self) -> str:
        """The page's address."""
        return url_of(self.sock)

    def run(self) -> None:
        """Serve until stopped (Ctrl-C, or ``stop()`` from another thread)."""
        self.server.run(sockets=[self.sock])

    def stop(self) -> None:
        """Ask the server to finish (safe from another thread)."""
        self.server.should_exit = True


def make_server(paths: list[str], host: str = "127.0.0.1", port: int = 0,
                poll_seconds: float = 2.0) -> tuple[DashboardServer, list[str]]:
    """Build the catalog, app and server for ``paths`` on ``host``:``port``.

    Returns the server and the warning lines to print (missing paths, no authentication).
    Raises ``ConfigError`` when no path exists, the port is in use or the extra is missing."""
    require_extra()
    import uvicorn

    catalog, warnings = data.StudyCatalog.from_paths(paths)
    for entry in catalog.refresh():
        if entry.error:
            warnings.append(f"{entry.error} (shown as such; the others are served)")
    warn = no_auth_warning(host)
    if warn:
        warnings.append(warn)
    app = create_app(catalog, poll_seconds)
    sock = bind_socket(host, port)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    return DashboardServer(uvicorn.Server(config), sock), warnings


def serve(paths: list[str], host: str = "127.0.0.1", port: int = 0,
          poll_seconds: float = 2.0, out: Any = None) -> int:
    """Serve the dashboard until Ctrl-C, printing its address (and warnings on stderr)."""
    out = out or sys.stdout
    server, warnings = make_server(paths, host, port, poll_seconds)
    for line in warnings:
        print(f"nasforge dashboard: {line}", file=sys.stderr)
    print(f"nasforge dashboard: serving {server.url} (read-only; Ctrl-C to stop)", file=out,
          flush=True)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn stops cleanly on Ctrl-C, then raises it again
        print("nasforge dashboard: stopped", file=out)
    finally:
        server.sock.close()
    return 0


__all__ = ["create_app", "make_server", "serve", "bind_socket", "no_auth_warning",
           "plotly_js_path", "DashboardServer"]
