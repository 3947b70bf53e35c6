"""`nasloop dashboard`: serve the read-only web dashboard over the experiment database."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import click
from werkzeug.serving import WSGIRequestHandler, make_server

from orchestrator.commands.common import db_url_option, workdir_option
from orchestrator.dashboard import DashboardError, create_app, open_readonly


class _Handler(WSGIRequestHandler):
    """One request per connection, and a connection that sends nothing is closed after `timeout` s.

    With both, Ctrl-C can wait for every request in flight (non-daemon threads, joined in
    `server_close`) and still ends in seconds, whatever a browser keeps open. A daemon request thread
    cut off at interpreter exit (in sqlite or matplotlib's C++) aborts the process instead.
    """

    protocol_version = "HTTP/1.0"
    timeout = 10


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@db_url_option
@workdir_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (the dashboard has no login: keep it on localhost).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port).")
def dashboard(db_url: str | None, workdir: Path, host: str, port: int) -> None:
    """Serve a read-only web dashboard of the experiments, live while a cycle runs.

    It opens the database for reading only: it never writes, never migrates and never takes the
    cycle's lock. Ctrl-C stops it.
    """
    try:
        db = open_readonly(workdir, db_url)
    except DashboardError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        server = make_server(host, port, create_app(db), threaded=True, request_handler=_Handler)
        server.daemon_threads = False  # joined on close (socketserver's block_on_close)
    except OSError as exc:
        db.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from None
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request (the pages poll)
    if not _loopback(host):
        click.echo(f"warning: listening on {host}, reachable from other machines; the dashboard has no login",
                   err=True)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"nasloop dashboard on http://{shown}:{server.port}/ (read-only: {db.url}); Ctrl-C stops it",
               err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        db.close()
