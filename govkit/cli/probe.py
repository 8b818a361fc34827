"""`govkit probe run`: GenAI risk probes through the endpoint, judged without a model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ._common import COUNT, db_option, echo_json, json_option, open_log, settings_for
from ._root import cli


@cli.group()
def probe() -> None:
    """GenAI risk probes: injection, leakage, personal data, harmful and benign asks, confabulation, unsafe output."""


@probe.command("run")
@click.option("--endpoint", required=True, help="The OpenAI-compatible base URL (govkit proxy's, so each probe is audited).")
@click.option("--suite", type=click.Choice(("smoke", "gate")), default="smoke", show_default=True,
              help="smoke: 10 probes a category (CI); gate: 100 (pre-deployment: enough to bound a rate of 0 below 4%).")
@click.option("--per-category", type=COUNT, help="Another number of probes a category.")
@click.option("--probes", "probe_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A probe set of your own, in the shipped set's format (default: govkit's core-v1).")
@click.option("--category", "only", multiple=True, help="Only this category; repeatable.")
@click.option("--seed", type=int, default=0, show_default=True, help="Makes the canaries, secrets and customers.")
@click.option("--parallel", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Probes in flight at once (the server's parallel slots).")
@click.option("--max-tokens", type=click.IntRange(1, 4096), default=48, show_default=True)
@click.option("--model-artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The model file the endpoint serves: the run is about it.")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A reference run of the same model file and probes (its --format json): production parity.")
@db_option
@json_option
@click.pass_context
def probe_run(ctx: click.Context, endpoint: str, suite: str, per_category: int | None, probe_file: Path | None,
              only: tuple[str, ...], seed: int, parallel: int, max_tokens: int, model_artifact: Path | None,
              reference: Path | None, db: Path | None, as_json: bool) -> None:
    """Run the probe set through the endpoint; exit 1 when a category fails its threshold (or regressed).

    Example: govkit probe run --endpoint http://127.0.0.1:8765/v1 --suite smoke --model-artifact model.gguf
    """
    from ..probes import run_probes

    settings = settings_for(ctx, required=True)

    def progress(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            click.echo(f"  {done}/{total} probes", err=True)
            sys.stderr.flush()

    with open_log(ctx, db) as log:
        ran = run_probes(log, settings, endpoint=endpoint, suite=suite, per_category=per_category,
                         probe_file=probe_file, seed=seed, parallel=parallel, max_tokens=max_tokens,
                         model_artifact=model_artifact, only=only, reference=reference, progress=progress)
    _show(ctx, ran, as_json)


def _show(ctx: click.Context, ran: Any, as_json: bool) -> None:
    if as_json:
        echo_json({"record_id": ran.record_id, **ran.result})
    else:
        result = ran.result
        timing = (f" in {result['seconds']:.0f} s ({result['probes_per_s']} a second)" if result.get("seconds")
                  else "")
        click.echo(f"{result['probes']} probes{timing}, set {result['probe_set']['name']} "
                   f"v{result['probe_set']['version']}, seed {result['seed']}")
        for probe, row in (result.get("garak") or {}).get("probes", {}).items():
            click.echo(f"  garak {probe:<48} {row['hits']}/{row['attempts']} by {row['detector']}"
                       + ("" if row["category"] else "  (no govkit category: shown, not judged)"))
        for name, c in result["categories"].items():
            low, high = c.get("interval") or (None, None)
            shown = (f"{c['succeeded']}/{c['n']} = {c['rate']:.0%} ({low:.0%}-{high:.0%})" if c.get("rate") is not None
                     and low is not None and high is not None else "")
            limit = f", threshold {c['threshold']:.0%}" if c.get("threshold") is not None else ""
            extra = c.get("to_settle") or c.get("reason") or ""
            click.echo(f"  {name:<22} {c['status']:<13} {shown}{limit}{'; ' + extra if extra else ''}")
        parity = result.get("parity")
        if parity is not None:
            click.echo("Parity with the reference run: " + ("holds" if parity["holds"] else
                       f"does not hold ({', '.join(parity['apart']) or 'nothing to compare'})"))
        click.echo(f"Overall: {ran.status.upper()} (record {ran.record_id})")
    if ran.status == "fail":
        ctx.exit(1)


@probe.command("import-garak")
@click.argument("report", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model-artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The model file garak's target served: the run is about it.")
@db_option
@json_option
@click.pass_context
def probe_import_garak(ctx: click.Context, report: Path, model_artifact: Path | None, db: Path | None,
                       as_json: bool) -> None:
    """Chain a garak report (its .report.jsonl, gzipped or not) as a probe run under govkit's
    categories, judged by the [policy.probes] thresholds chained before garak started; exit 1 on a failure.

    Example: govkit probe import-garak ~/.local/share/garak/garak_runs/scan.report.jsonl --model-artifact model.gguf
    """
    from ..probes import import_garak

    settings = settings_for(ctx, required=True)
    with open_log(ctx, db) as log:
        ran = import_garak(log, settings, report, model_artifact=model_artifact)
    _show(ctx, ran, as_json)


@probe.command("garak")
@click.option("--endpoint", required=True, help="govkit proxy's OpenAI-compatible base URL.")
@click.option("--spec", required=True, help="garak's probe selection, e.g. probes.promptinject,probes.encoding.InjectBase64.")
@click.option("--garak", "garak_command", default="garak", show_default=True,
              help="The garak command (installed in a venv of its own).")
@click.option("--model", default="model", show_default=True, help="The model name sent to the endpoint.")
@click.option("--prompt-cap", type=click.IntRange(1, 10000), default=10, show_default=True,
              help="Prompts per garak probe at most (garak's soft_probe_prompt_cap).")
@click.option("--max-tokens", type=click.IntRange(1, 4096), default=48, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path(".govkit/garak"),
              show_default=True, help="Where garak's config and report go.")
@click.option("--model-artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@db_option
@json_option
@click.pass_context
def probe_garak(ctx: click.Context, endpoint: str, spec: str, garak_command: str, model: str, prompt_cap: int,
                max_tokens: int, workdir: Path, model_artifact: Path | None, db: Path | None, as_json: bool) -> None:
    """Run garak against the endpoint (each attempt an audited call, purpose evaluation), the
    thresholds chained first, and import its report; exit 1 on a failure.

    Example: govkit probe garak --endpoint http://127.0.0.1:8765/v1 --spec probes.promptinject --garak ~/garak/bin/garak
    """
    from ..probes import run_garak

    settings = settings_for(ctx, required=True)
    with open_log(ctx, db) as log:
        ran = run_garak(log, settings, endpoint=endpoint, spec=spec, garak=garak_command, model=model,
                        prompt_cap=prompt_cap, max_tokens=max_tokens, model_artifact=model_artifact, workdir=workdir)
    _show(ctx, ran, as_json)
