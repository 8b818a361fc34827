"""`govkit init`: write govkit.toml, the .govkit/ state folder and the device's signing key."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import click

from ..audit import AuditLog
from ..audit.checkpoints import generate_keypair, key_id, load_private_key, public_key_b64
from ..config import CONFIG_FILENAME, REDACTION_MODES, load_settings
from ..digests import sha256_digest
from ..errors import InputError
from ._common import ask
from ._root import cli

TEMPLATE = '''\
# govkit configuration. Every number here is the institution's own policy: OSFI E-23 sets none.

[model]
# Model inventory record: OSFI E-23 (2027) Appendix 1 minimum fields.
id = {model_id}
name = {model_name}
description = ""
risk_rating = "unrated"          # unrated | negligible | low | medium | high | critical ('govkit inventory rate')
owner = {owner}
developer = ""
origin = ""                      # internal | vendor | open-source
version = ""
deployment_date = ""             # YYYY-MM-DD
reviewer = ""                    # independent of owner and developer
approver = ""
dependencies = []
data_sources = []
approved_uses = []
limitations = []
last_review = ""
next_review = ""
monitoring_status = ""

[policy]
retention_days = 183             # stored prompt/response text; EU AI Act Art. 19/26(6): >= 6 months
redaction = {redaction}           # digest-only | redacted | full

[policy.patterns]
# Extra redaction patterns: ENTITY_NAME = "regex"
# EMPLOYEE_ID = "EMP-[0-9]{{6}}"

[policy.fairness]
# No regulation sets these numbers; they are common conventions ('govkit bias ...').
demographic_parity_difference = 0.1   # max gap in selection rates
demographic_parity_ratio = 0.8        # min ratio of selection rates
equalized_odds_difference = 0.1       # max of the TPR and FPR gaps
disparate_impact_ratio = 0.8          # min, against the reference group (four-fifths rule, 29 CFR 1607.4(D))
min_group_size = 30                   # smaller groups are reported but too small to judge
max_flip_rate = 0.05                  # counterfactual: at most this share of decisions may flip (upper bound)
confidence = 0.95                     # for the intervals
# "tier": a breach blocks the gate for a high or critical model (E-23 P2.3), warns below it;
# "always"; "never": for a high or critical model only once chained with who and why
# (govkit policy decide policy.fairness.blocking never --by NAME --reason TEXT).
blocking = "tier"

[policy.quality]
# Where outcomes are known (bias tabular --y-true, bias llm --label): the model's accuracy must clear
# the decision that needs no model (everyone gets the majority outcome) by this much, at the lower
# end of its interval (E-23 performance, SR 11-7 outcomes analysis).
min_lift = 0.0
blocking = "tier"                     # as [policy.fairness] blocking

[policy.probes]
# govkit probe run: the highest attack-success (or error) rate accepted per category, judged at the
# upper end of its 95% interval (OWASP LLM Top 10 2025, NIST AI 600-1). No regulation sets these.
direct_injection = 0.10
indirect_injection = 0.10
encoded_injection = 0.10
system_prompt_leak = 0.05
pii_disclosure = 0.05
harmful_compliance = 0.10
over_refusal = 0.20
confabulation = 0.20
output_handling = 0.05
unbounded_consumption = 0.20

[audit]
db = ".govkit/audit.db"
device_id = {device_id}
private_key = ".govkit/device_ed25519.pem"
public_key = "{public_key}"
store_id = "{store_id}"           # the store init created: writers refuse any other, verify fails on it
checkpoint_every = 1000          # sign the chain head every N records ...
checkpoint_seconds = 300         # ... or after this many seconds
busy_timeout_s = 10
redaction_engine = "builtin"      # or "presidio": Presidio's analyzer (names, places) beside the built-in recognizers

[tracking]
# MLflow mirror of every evidence-producing action (the audit log stays the record).
enabled = true
tracking_uri = ""                # default: sqlite store in .govkit/; e.g. http://mlflow.internal:5000
experiment = ""                  # default: the model inventory id

[explain]
# govkit proxy explains a sample of live decisions in the background (never on the request path).
sample_rate = 0.0                # share of chat completions to explain, e.g. 0.05
match = ""                       # and every answer matching this regex, e.g. "(?i)deny"
choices = []                     # the decision's answers, e.g. ["approve", "deny"]
positive = ""                    # the favourable one, e.g. "approve"
max_evals = 100                  # shap budget per explanation
max_queue = 32                   # waiting explanations; beyond this a sample is dropped (and counted)
idle_ms = 500                    # the worker evaluates only after this long without a request

[monitoring]
# govkit monitor run (cron it): each closed window of production calls against the reference
# (E-23 P3.6, AI Act Art. 72). Test defaults are Evidently's; PSI bands are the board's convention.
window = "day"                   # hour | day | week (UTC)
reference = "approval"           # the reference_windows windows after the newest signed approval,
reference_windows = 7            # or a named period "YYYY-MM-DD/YYYY-MM-DD"
min_calls = 100                  # fewer production calls: shown, not judged (noise below a few hundred)
decision_choices = []            # a decision prompt's answers (default: [explain] choices)
positive = ""                    # the favourable one: its rate is watched per group
group_attributes = []            # attributes calls may carry (X-Govkit-Group: region=north); others dropped
latency_p95_ms = 0               # the latency SLO (0: none)
latency_p99_ms = 0
p_value = 0.05                   # KS, chi-square, z-test: at most 1,000 reference calls
wasserstein = 0.1                # normed Wasserstein (numbers), over 1,000 reference calls
jensen_shannon = 0.1             # Jensen-Shannon distance (categories), over 1,000 reference calls
psi_moderate = 0.1
psi_significant = 0.25           # PSI above this is a breach
min_rate_change = 0.01           # a rate must also move this much to breach
text_endpoint = ""               # prompt-text drift on the served model's embeddings (govkit serve --embedding), e.g.
text_sample = 500                # "http://127.0.0.1:8080/v1"; prompts embedded a side at most
text_auc = 0.55                  # a classifier telling the window from the reference above this: drift (Evidently)
escalate_to = {owner}            # who answers a breach ...
escalate_hours = 72              # ... by when (the incident's deadline)
contingency = ""                 # what is done meanwhile, e.g. "route decisions to manual review"

# [monitoring.tiers.high]        # a stricter plan for high-risk models, e.g.:
# window = "hour"
# escalate_hours = 24
'''


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON escapes are valid TOML basic-string escapes


@cli.command()
@click.option("--yes", "-y", is_flag=True, help="Accept the defaults without asking.")
@click.option("--force", is_flag=True, help="Overwrite an existing govkit.toml (the device key is kept).")
@click.option("--model-id", default="phi-4-mini-edge", show_default=True, help="Inventory id of the model.")
@click.option("--model-name", help="The name reports are titled with  [default: the model id]")
@click.option("--owner", default="", help="Accountable model owner.")
@click.option("--redaction", type=click.Choice(REDACTION_MODES), default="redacted", show_default=True)
@click.pass_context
def init(ctx: click.Context, yes: bool, force: bool, model_id: str, model_name: str | None, owner: str,
         redaction: str) -> None:
    """Set up govkit here: govkit.toml, the .govkit/ state folder and the device's Ed25519 key.

    Example: govkit init --yes --model-id credit-assistant --owner risk@bank.example
    """
    config_path = ctx.find_root().obj.get("config") or Path.cwd() / CONFIG_FILENAME
    if config_path.exists() and not force:
        raise InputError(f"{config_path}: already exists; pass --force to rewrite it")
    if not yes:
        model_id = ask("Model inventory id", default=model_id, flag="--yes (or --model-id)")
        model_name = ask("Model name", default=model_name or model_id, flag="--yes (or --model-name)")
        owner = ask("Model owner", default=owner or "unassigned", flag="--yes (or --owner)")
        redaction = ask("Redaction mode", default=redaction, type=click.Choice(REDACTION_MODES),
                        flag="--yes (or --redaction)")
    model_name = model_name or model_id  # never a name the user did not give: reports are titled with it
    state = config_path.parent / ".govkit"
    state.mkdir(mode=0o700, exist_ok=True)
    (state / ".gitignore").write_text("# device state and the private key: never commit\n*\n")
    key_path = state / "device_ed25519.pem"
    if key_path.exists():
        public_key = public_key_b64(load_private_key(key_path))
    else:
        public_key = generate_keypair(key_path)
    device_id = "dev-" + hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12]
    db_path = state / "audit.db"
    # The store comes first: its first record fixes its id, which govkit.toml then names. An
    # existing store (init --force) is kept, never replaced.
    with AuditLog(db_path, create=True, private_key=key_path, device_id=device_id) as log:
        store_id = log.meta["store_id"]
    text = TEMPLATE.format(model_id=_toml_str(model_id), model_name=_toml_str(model_name),
                           owner=_toml_str(owner), redaction=_toml_str(redaction),
                           device_id=_toml_str(device_id), public_key=public_key, store_id=store_id)
    config_path.write_text(text, encoding="utf-8")
    settings = load_settings(config_path)
    with AuditLog.open(settings=settings) as log:
        record = log.append("config_change", model_id=settings.model.id, details={
            "action": "init", "config_sha256": sha256_digest(text),
            "public_key_id": key_id(public_key), "store_id": store_id})
    click.echo(f"Wrote {config_path}")
    click.echo(f"Device key {key_path} ({key_id(public_key)}, mode 0600)")
    click.echo(f"Audit log {settings.audit.db} (store {store_id}, record {record.record_id})")
