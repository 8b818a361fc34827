"""`govkit proxy`: audit every call an application makes to a local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._lazy import require
from ..audit import AuditLog
from ..config import Settings
from ..errors import InputError
from ..inference.proxy import AuditingProxy, ProxyConfig
from ._common import COUNT, db_option, open_log, settings_for
from ._root import cli

if TYPE_CHECKING:
    from ..explain.sampler import ExplanationSampler


@cli.command()
@click.option("--upstream", required=True, help="The model server's OpenAI API, e.g. http://127.0.0.1:8080/v1")
@click.option("--listen", default="127.0.0.1:8765", show_default=True, help="HOST:PORT to serve on (loopback by default).")
@click.option("--model-artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The model file the upstream serves (GGUF/ONNX/safetensors): its sha256 goes in every record.")
@click.option("--require-token", is_flag=True,
              help="Clients must send 'Authorization: Bearer TOKEN' (TOKEN from $GOVKIT_PROXY_TOKEN or --token-file).")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--upstream-key-env", metavar="VAR", help="Environment variable holding the upstream's API key.")
@click.option("--max-body-bytes", type=COUNT, default=8 * 1024 * 1024, show_default=True)
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=300.0, show_default=True,
              help="Seconds to wait for the upstream between bytes.")
@click.option("--runtime", help="Runtime name[=version] to record, when the upstream does not say (e.g. llama.cpp=b4500).")
@click.option("--max-connections", type=COUNT, default=1024, show_default=True,
              help="Open client connections in all; beyond it a new one gets 503.")
@click.option("--max-per-client", type=COUNT, default=128, show_default=True,
              help="Open connections from one client address.")
@click.option("--header-timeout", "header_timeout_s", type=click.FloatRange(min=0.1), default=10.0,
              show_default=True, help="Seconds for a new connection's request head to arrive.")
@click.option("--body-timeout", "body_timeout_s", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds for a request's whole body to arrive (408 after it): a body sent a byte at a time "
                   "cannot hold a connection longer.")
@click.option("--journal-window-ms", "journal_window_ms", type=click.FloatRange(min=0, max=1000), default=20.0,
              show_default=True, help="A stream's parts arriving within this many ms share one durable journal "
                                      "commit before they are forwarded (0: one commit per part).")
@click.option("--allow-route", "allow_routes", multiple=True, metavar="PATH",
              help="Also forward this read-only path unaudited (repeatable). Inference routes are always "
                   "audited; any other route is refused with 404 and recorded.")
@db_option
@click.pass_context
def proxy(ctx: click.Context, upstream: str, listen: str, model_artifact: Path | None, require_token: bool,
          token_file: Path | None, upstream_key_env: str | None, max_body_bytes: int, timeout_s: float,
          runtime: str | None, max_connections: int, max_per_client: int, header_timeout_s: float,
          body_timeout_s: float, journal_window_ms: float, allow_routes: tuple[str, ...], db: Path | None) -> None:
    """Serve an auditing OpenAI-compatible proxy in front of a local model server.

    Apps change only their base URL. Every call to an inference route (chat, completions,
    responses, embeddings, rerank ...; OpenAI, llama.cpp, Ollama and Anthropic shapes) is recorded
    before the model is asked, and its answer reaches the app only once that is recorded too.

    Example: govkit proxy --upstream http://127.0.0.1:8080/v1 --model-artifact phi-4-mini-q4.gguf
    """
    require("aiohttp", "proxy")
    host, _, port_text = listen.rpartition(":")
    if not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise click.BadParameter(f"{listen!r}: expected HOST:PORT with a port from 1 to 65535", param_hint="--listen")
    token = None
    if require_token:
        token = token_file.read_text().strip() if token_file else os.environ.get("GOVKIT_PROXY_TOKEN", "")
        if not token:
            raise InputError("--require-token needs a token in $GOVKIT_PROXY_TOKEN or --token-file")
    upstream_key = None
    if upstream_key_env:
        upstream_key = os.environ.get(upstream_key_env)
        if not upstream_key:
            raise InputError(f"${upstream_key_env} is empty or unset")
    from ..inference.routes import INFERENCE_ROUTES, normalise_path

    allowed = frozenset(normalise_path(path) for path in allow_routes)
    if allowed & INFERENCE_ROUTES.keys():
        raise click.BadParameter(f"{sorted(allowed & INFERENCE_ROUTES.keys())[0]} is an inference route: always audited",
                                 param_hint="--allow-route")
    settings = settings_for(ctx, required=db is None)
    from ..inference.connections import GuardPolicy

    config = ProxyConfig(allow_routes=allowed, guard=GuardPolicy(max_connections, max_per_client, header_timeout_s),
                         upstream=upstream, host=host, port=int(port_text), model_artifact=model_artifact,
                         model_id=settings.model.id if settings else None, client_token=token,
                         upstream_api_key=upstream_key, max_body_bytes=max_body_bytes, timeout_s=timeout_s,
                         runtime=runtime, body_timeout_s=body_timeout_s, journal_window_s=journal_window_ms / 1000,
                         **_monitored(settings))
    if host not in ("127.0.0.1", "localhost", "::1") and token is None:
        click.echo("warning: listening beyond loopback without --require-token", err=True)
    try:  # uvloop, where installed (the `proxy` extra), roughly halves the proxy's own overhead
        import uvloop
        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with open_log(ctx, db) as log, asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(AuditingProxy(log, config, _sampler(log, config, settings)), config, log.path))


def _sampler(log: AuditLog, config: ProxyConfig, settings: Settings | None) -> ExplanationSampler | None:
    """The background explainer of sampled decisions, when govkit.toml's [explain] asks for one."""
    explain = settings.explain if settings else None
    if explain is None or not (explain.sample_rate > 0 or explain.match):
        return None
    from ..explain.sampler import ExplanationSampler

    click.echo(f"explaining in the background: {explain.sample_rate:.0%} of decisions"
               + (f" and every answer matching {explain.match!r}" if explain.match else ""))
    return ExplanationSampler(log.path, explain, endpoint=config.upstream, log_settings=settings,
                              model_artifact=config.model_artifact, model_id=config.model_id)


async def _serve(proxy: AuditingProxy, config: ProxyConfig, log_path: Path) -> None:
    from ..inference.connections import ConnectionGuard

    web = require("aiohttp.web", "proxy")
    # No access log: every audited call is already a record, and the formatting costs per request.
    # After an early answer (408, 413), aiohttp reads what is left of a body for `lingering_time`
    # before it closes: a second at most, or a trickling client holds its slot on for ten more.
    runner = web.AppRunner(proxy.app(), handle_signals=False, access_log=None, keepalive_timeout=15.0,
                           lingering_time=1.0)
    await runner.setup()
    loop = asyncio.get_running_loop()
    # Connections pass a guard before aiohttp's own handler: capped per client and in all, the
    # request head within a time limit. The listener is ours, so the guard needs no hook in aiohttp.
    try:
        listener = await loop.create_server(ConnectionGuard(runner.server, config.guard), config.host, config.port,
                                            backlog=1024)
    except OSError as exc:
        await runner.cleanup()
        raise InputError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}") from None
    identity = proxy.identity
    click.echo(f"govkit proxy listening on http://{config.host}:{config.port}/v1 -> {config.upstream}")
    click.echo(f"audit log {log_path}" + (f"; model {identity.sha256} ({identity.quantization})" if identity else ""))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    click.echo("govkit proxy: stopping; finishing in-flight requests")
    listener.close()  # stop accepting
    await runner.cleanup()  # waits for handlers in flight, closes the upstream session


def _monitored(settings: Any) -> dict[str, Any]:
    """What [monitoring] asks each record to say of its answer (nothing without a govkit.toml)."""
    if settings is None:
        return {}
    plan = settings.monitoring_plan()
    return {"decision_choices": plan.decision_choices, "group_attributes": plan.group_attributes}
