"""`govkit serve`: llama.cpp's own server for a GGUF file, from the xllamacpp wheel (no compiler)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..errors import InputError
from ._root import cli

MAX_THREADS = 512  # ggml's GGML_MAX_N_THREADS: llama.cpp takes no more (and more slots than that is no use)


@cli.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), help="CPU threads for the model  [default: every core]")
@click.option("--ctx", type=click.IntRange(min=64), default=2048, show_default=True, help="Context length in tokens.")
@click.option("--parallel", type=click.IntRange(1, MAX_THREADS), default=1, show_default=True,
              help="Requests decoded at once (the context is shared between them).")
@click.option("--embedding", is_flag=True, help="Also serve /v1/embeddings (mean pooling).")
@click.option("--api-key-env", metavar="VAR", help="Environment variable holding the API key clients must send.")
def serve(model: Path, host: str, port: int, threads: int | None, ctx: int, parallel: int, embedding: bool,
          api_key_env: str | None) -> None:
    """Serve a GGUF model with llama.cpp's own OpenAI-compatible server (the `serve` extra).

    Routes: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/messages, /completion,
    /infill, /props, /metrics, /health. The runtime's identity (the llama.cpp build and the sha256
    of its native library) is published in /v1/models, where `govkit proxy` puts it into every
    record. Stops cleanly on Ctrl-C or SIGTERM.

    Example: govkit serve phi-4-mini-q4.gguf --port 8080 & govkit proxy --upstream http://127.0.0.1:8080/v1
    """
    from ..inference.serve import ServeOptions
    from ..inference.serve import serve as run

    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise InputError(f"${api_key_env} is empty or unset", parameter="api_key_env")
    if host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        click.echo("warning: serving beyond loopback without --api-key-env", err=True)

    def ready(url: str, identity: dict[str, str], used_threads: int) -> None:
        click.echo(f"govkit serve listening on {url}/v1 ({model.name}; llama.cpp {identity['runtime_version']}, "
                   f"{used_threads} threads, ctx {ctx})")

    run(ServeOptions(model=model, host=host, port=port, threads=threads, ctx=ctx, api_key=api_key,
                     embedding=embedding, parallel=parallel), ready)
    click.echo("govkit serve: stopped")
