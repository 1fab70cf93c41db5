"""``syllabus example-api``: serve the Hive API of ``examples/hive-api`` from memory."""

from __future__ import annotations

import click

__all__ = ["example_api"]


@click.command("example-api")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (keep it on loopback).")
@click.option("--port", type=int, default=8765, show_default=True,
              help="Port; examples/hive-api/openapi.yaml names 8765.")
def example_api(host: str, port: int) -> None:
    """Serve the example beekeeping API (examples/hive-api/openapi.yaml) locally.

    Nine operations over hives, inspections and harvests, from memory; the data start the
    same at every start. GET /openapi.yaml serves the spec with this server's URL. Then,
    in another shell: cd examples/hive-api && syllabus run openapi.yaml (its syllabus.toml
    allows this loopback server explicitly; see the README).
    """
    import uvicorn

    from ..api_annotator._example_api import build_example_api

    click.echo(f"Hive API on http://{host}:{port} (spec: http://{host}:{port}/openapi.yaml); "
               "Ctrl-C stops it", err=True)
    uvicorn.run(build_example_api(), host=host, port=port, log_level="warning",
                access_log=False)
