"""People sign: `govkit keygen --person`, `govkit people init|add|list`, `govkit review sign`,
`govkit approve`, `govkit exemption add`, `govkit attest KIND`, `govkit attestations
list|verify|revoke`. Each signature is an in-toto Statement in a DSSE envelope, chained."""

from __future__ import annotations

import datetime as dt
import re
import stat
from pathlib import Path
from typing import Any

import click

from ..errors import InputError
from ..timestamps import input_date
from ._common import ask, db_option, echo_json, json_option, open_log, settings_for
from ._root import cli

ROLE_CHOICES = ("owner", "developer", "reviewer", "approver", "oversight", "board")


def _default_key_path(person: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", person.lower()).strip("-") or "person"
    return Path.home() / ".govkit" / "keys" / f"{slug}.key"


def _person_key(path: Path, settings: Any, key_in_project: bool) -> Any:
    """A person's private key: refused with loose permissions, or inside the project folder unless asked."""
    from ..audit.checkpoints import load_private_key

    if not path.is_file():
        raise InputError("no such key file", file=path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InputError(f"the key is readable by others (mode {mode:o}); chmod 600 it", file=path)
    if settings is not None and settings.path is not None and not key_in_project:
        project = settings.path.parent.resolve()
        if project == path.resolve().parent or project in path.resolve().parents:
            raise InputError("a person's key lives outside the project folder (it would travel with the project "
                             "and its backups); move it, or pass --key-in-project", file=path)
    if settings is not None and settings.audit.private_key and path.resolve() == Path(settings.audit.private_key).resolve():
        raise InputError("this is the device key: a person signs with their own key (govkit keygen --person NAME)",
                         file=path)
    return load_private_key(path)


def _date(text: str, parameter: str, *, future: bool = False) -> str:
    day = input_date(text, parameter=parameter)
    if future and day < dt.date.today():
        raise InputError("expected a date that has not passed", parameter=parameter, value=text)
    return day.isoformat()


key_option = click.option("--key", "key_path", type=click.Path(path_type=Path),
                          help="Your private key (govkit keygen --person NAME); never the device key.")
key_in_project_option = click.option("--key-in-project", is_flag=True,
                                     help="Accept a key file inside the project folder.")


@cli.command()
@click.option("--person", required=True, help="Whose key (a name; the file is named after it).")
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), help="Where (default ~/.govkit/keys/NAME.key).")
def keygen(person: str, out: Path | None) -> None:
    """Make a person's own Ed25519 signing key (mode 0600), outside the project folder by default.

    Example: govkit keygen --person "Val Idator"
    """
    from ..audit.checkpoints import generate_keypair, key_id

    path = out or _default_key_path(person)
    if path.exists():
        raise InputError("a key file is already there: nothing was overwritten", file=path)
    public = generate_keypair(path)
    click.echo(f"Wrote {path} (mode 0600) for {person}")
    click.echo(f"public key {public}")
    click.echo(f"key id {key_id(public)}")


@cli.group()
def people() -> None:
    """The roster: each person's name, roles, public key and training date, signed by the model owner."""


@people.command("init")
@click.option("--name", help="The model owner's name.")
@key_option
@click.option("--trained", help="The owner's training date (YYYY-MM-DD).")
@key_in_project_option
@db_option
@click.pass_context
def people_init(ctx: click.Context, name: str | None, key_path: Path | None, trained: str | None,
                key_in_project: bool, db: Path | None) -> None:
    """Make the model owner's key the roster's trust anchor ([people] owner_public_key in
    govkit.toml) and chain the owner's own entry, signed with it.

    Example: govkit people init --name "Olive Owner" --key ~/.govkit/keys/olive-owner.key
    """
    from ..attest.ledger import add_to_roster, pin_owner_key
    from ..audit.checkpoints import public_key_b64

    settings = settings_for(ctx, required=True)
    name = name or ask("The model owner's name", flag="--name")
    key_path = key_path or Path(ask("The owner's private key file", flag="--key"))
    private = _person_key(key_path, settings, key_in_project)
    public = public_key_b64(private)
    if settings.people.owner_public_key and settings.people.owner_public_key != public:
        raise InputError("govkit.toml already names another owner key ([people] owner_public_key); a new owner is "
                         "a change of the roster's anchor: edit govkit.toml deliberately", file=settings.path)
    config = settings.path
    assert config is not None  # settings_for(required=True) reads a govkit.toml
    pin_owner_key(config, public)
    from ..config import load_settings

    settings = load_settings(config)
    with open_log(ctx, db) as log:
        record = add_to_roster(log, settings, private, name=name, roles=["owner"], public_key=public,
                               trained=_date(trained, "trained") if trained else "")
    click.echo(f"{settings.path}: [people] owner_public_key set; {name} is on the roster as owner "
               f"(record {record.record_id})")


@people.command("add")
@click.argument("name")
@click.option("--role", "roles", multiple=True, type=click.Choice(ROLE_CHOICES), help="A role; repeatable.")
@click.option("--public-key", help="Their public key (base64, as govkit keygen printed it).")
@click.option("--trained", help="Their training date (YYYY-MM-DD): what oversight requires (AI Act Art. 14(4)).")
@key_option
@key_in_project_option
@db_option
@click.pass_context
def people_add(ctx: click.Context, name: str, roles: tuple[str, ...], public_key: str | None, trained: str | None,
               key_path: Path | None, key_in_project: bool, db: Path | None) -> None:
    """Put a person on the roster, signed with the model owner's key (--key).

    Example: govkit people add "Val Idator" --role reviewer --public-key BASE64 --trained 2026-09-01 --key OWNER.key
    """
    from ..attest.ledger import add_to_roster
    from ..audit.checkpoints import parse_public_key, public_key_b64

    settings = settings_for(ctx, required=True)
    if not settings.people.owner_public_key:
        raise InputError("no roster yet: the model owner runs govkit people init first", file=settings.path)
    if not roles:
        roles = (ask(f"{name}'s role", flag="--role", type=click.Choice(ROLE_CHOICES)),)
    public = parse_public_key(public_key or ask(f"{name}'s public key", flag="--public-key"), source="--public-key")
    key_path = key_path or Path(ask("The model owner's private key file", flag="--key"))
    private = _person_key(key_path, settings, key_in_project)
    if public_key_b64(private) != settings.people.owner_public_key:
        raise InputError("only the model owner's key ([people] owner_public_key) signs the roster", file=key_path)
    with open_log(ctx, db) as log:
        record = add_to_roster(log, settings, private, name=name, roles=list(roles), public_key=public,
                               trained=_date(trained, "trained") if trained else "")
    click.echo(f"{name} is on the roster as {', '.join(sorted(set(roles)))} (record {record.record_id})")


@people.command("list")
@db_option
@json_option
@click.pass_context
def people_list(ctx: click.Context, db: Path | None, as_json: bool) -> None:
    """The roster as the owner-signed entries give it.

    Example: govkit people list --format json
    """
    found = _attestations(ctx, db)
    listed = found.roster.listing()
    if as_json:
        echo_json(listed)
        return
    for person in listed:
        state = " (revoked)" if person["revoked"] else ""
        click.echo(f"{person['key_id']}  {person['name']}: {', '.join(person['roles'])}; trained "
                   f"{person['trained'] or '(not recorded)'}{state}")
    if found.roster.rejected:
        click.echo(f"{len(found.roster.rejected)} roster entr(ies) not signed by the owner's key are ignored",
                   err=True)
    click.echo(f"{len(listed)} person(s)")


def _attestations(ctx: click.Context, db: Path | None) -> Any:
    from ..attest import Attestations

    settings = settings_for(ctx, required=db is None)
    with open_log(ctx, db, read_only=True) as log:
        records = list(log.query(event_type="attestation"))
    return Attestations.from_records(settings.people.owner_public_key if settings else "", records)


def _sign(ctx: click.Context, kind: str, predicate: dict[str, Any], key_path: Path | None, key_in_project: bool,
          db: Path | None) -> None:
    from ..attest import record_attestation
    from ..attest.ledger import KIND_ROLES
    from ..audit.checkpoints import key_id, public_key_b64

    settings = settings_for(ctx, required=True)
    key_path = key_path or Path(ask("Your private key file", flag="--key"))
    private = _person_key(key_path, settings, key_in_project)
    roster = _attestations(ctx, db).roster
    person = roster.people.get(key_id(public_key_b64(private)))
    if person is None or person.key_id in roster.revoked_keys:
        raise InputError("this key is not on the roster (govkit people add ... by the model owner), or was revoked",
                         file=key_path)
    if not set(KIND_ROLES[kind]) & set(person.roles):
        raise InputError(f"{person.name} is on the roster as {', '.join(person.roles)}; a {kind} is signed by "
                         f"a {' or '.join(KIND_ROLES[kind])}", file=key_path)
    with open_log(ctx, db) as log:
        record = record_attestation(log, settings, kind, predicate, private)
    click.echo(f"{person.name} signed the {kind} (record {record.record_id}, over the evidence to seq "
               f"{record.seq - 1}).")


@cli.group()
def review() -> None:
    """The independent review: findings and a recommendation, signed by a reviewer (E-23 P3.4)."""


@review.command("sign")
@click.option("--recommendation", type=click.Choice(("approve", "approve-with-conditions", "reject")))
@click.option("--finding", "findings", multiple=True, help="A finding of the review; repeatable (redacted).")
@click.option("--conditions", help="The conditions of an approve-with-conditions (redacted).")
@key_option
@key_in_project_option
@db_option
@click.pass_context
def review_sign(ctx: click.Context, recommendation: str | None, findings: tuple[str, ...], conditions: str | None,
                key_path: Path | None, key_in_project: bool, db: Path | None) -> None:
    """Sign the review of the model now deployed, over the evidence as it stands.

    Example: govkit review sign --recommendation reject --finding "decisions flip on first names" --key ~/.govkit/keys/val.key
    """
    recommendation = recommendation or ask("Recommendation", flag="--recommendation",
                                           type=click.Choice(("approve", "approve-with-conditions", "reject")))
    if not findings:
        findings = (ask("The review's findings", flag="--finding"),)
    if recommendation == "approve-with-conditions" and not conditions:
        conditions = ask("The conditions", flag="--conditions")
    _sign(ctx, "review", {"recommendation": recommendation, "findings": list(findings), "conditions": conditions or ""},
          key_path, key_in_project, db)


@cli.command()
@click.option("--residual-risk", help="The residual risk the approver accepts (redacted).")
@click.option("--valid-until", help="Until when the approval holds (YYYY-MM-DD).")
@click.option("--conditions", help="Conditions of the approval (redacted).")
@key_option
@key_in_project_option
@db_option
@click.pass_context
def approve(ctx: click.Context, residual_risk: str | None, valid_until: str | None, conditions: str | None,
            key_path: Path | None, key_in_project: bool, db: Path | None) -> None:
    """Sign the approval of the model now deployed: the tier affirmed, the residual risk, conditions
    and expiry (E-23 model approval).

    Example: govkit approve --residual-risk "moderate" --valid-until 2027-06-30 --key ~/.govkit/keys/ann.key
    """
    settings = settings_for(ctx, required=True)
    residual_risk = residual_risk or ask("The residual risk accepted", flag="--residual-risk")
    valid_until = _date(valid_until or ask("Valid until (YYYY-MM-DD)", flag="--valid-until"), "valid_until",
                        future=True)
    _sign(ctx, "approval", {"tier": settings.model.risk_rating, "residual_risk": residual_risk,
                            "conditions": conditions or "", "valid_until": valid_until},
          key_path, key_in_project, db)


@cli.group()
def exemption() -> None:
    """Exemptions from a control: what, why and until when, signed by an approver (E-23 P2.2)."""


@exemption.command("add")
@click.option("--control", help="The control exempted (e.g. GOV-005).")
@click.option("--why", help="Why (redacted).")
@click.option("--until", help="Until when (YYYY-MM-DD).")
@key_option
@key_in_project_option
@db_option
@click.pass_context
def exemption_add(ctx: click.Context, control: str | None, why: str | None, until: str | None, key_path: Path | None,
                  key_in_project: bool, db: Path | None) -> None:
    """Sign an exemption from one control, until a date.

    Example: govkit exemption add --control GOV-005 --why "review moved to Q1" --until 2027-03-31 --key ann.key
    """
    control = control or ask("The control exempted", flag="--control")
    from ..remediation import CONTROL_ID

    if not CONTROL_ID.match(control):
        raise InputError("expected a control ID such as GOV-005", parameter="control", value=control)
    why = why or ask("Why", flag="--why")
    until = _date(until or ask("Until (YYYY-MM-DD)", flag="--until"), "until", future=True)
    _sign(ctx, "exemption", {"control": control, "why": why, "until": until},
          key_path, key_in_project, db)


@cli.command()
@click.argument("kind", type=click.Choice(("impact-assessment", "contingency-test", "decommission", "board-ack")))
@click.option("--statement", "text", help="What is attested (redacted): the assessment's finding, the test's result, ...")
@click.option("--reference", help="Where the document is (an ID or path; redacted).")
@click.option("--outcome", type=click.Choice(("passed", "failed")), help="For a contingency test: its outcome.")
@key_option
@key_in_project_option
@db_option
@click.pass_context
def attest(ctx: click.Context, kind: str, text: str | None, reference: str | None, outcome: str | None,
           key_path: Path | None, key_in_project: bool, db: Path | None) -> None:
    """Sign an impact-assessment reference, a contingency test, a decommission notice or the
    board's acknowledgement of a report, over the model and evidence now.

    Example: govkit attest board-ack --statement "board report 2026-Q4 received" --reference reports/board-2026-Q4.pdf --key b.key
    """
    text = text or ask("What is attested", flag="--statement")
    predicate: dict[str, Any] = {"statement": text, "reference": reference or ""}
    if kind == "contingency-test":
        predicate["outcome"] = outcome or ask("The test's outcome", flag="--outcome",
                                              type=click.Choice(("passed", "failed")))
    if kind == "board-ack" and reference and Path(reference).is_file():
        from ..digests import sha256_file

        predicate["report_sha256"] = sha256_file(Path(reference))[0]
    _sign(ctx, kind, predicate, key_path, key_in_project, db)


@cli.group()
def attestations() -> None:
    """The signed statements in the chain: list them, verify them against the roster, revoke one."""


@attestations.command("list")
@db_option
@json_option
@click.pass_context
def attestations_list(ctx: click.Context, db: Path | None, as_json: bool) -> None:
    """Every attestation that holds, and every one that does not, with why.

    Example: govkit attestations list
    """
    found = _attestations(ctx, db)
    if as_json:
        echo_json({"valid": [a.to_dict() for a in found.valid], "invalid": found.invalid})
        return
    for a in found.valid:
        click.echo(f"{a.record.seq:>7}  {a.kind:<17} {a.person.name} ({', '.join(a.person.roles)}) "
                   f"{a.record.ts_start[:10]}  {_said(a)}")
    for bad in found.invalid:
        click.echo(f"{bad['seq']:>7}  {bad['kind']:<17} DOES NOT HOLD: {bad['why']}")
    click.echo(f"{len(found.valid)} attestation(s) hold, {len(found.invalid)} do not")


def _said(a: Any) -> str:
    p = a.predicate
    return {"review": lambda: f"recommends {p.get('recommendation')}",
            "approval": lambda: f"approves (tier {p.get('tier')}) until {p.get('valid_until')}",
            "exemption": lambda: f"exempts {p.get('control')} until {p.get('until')}"}.get(
                a.kind, lambda: str(p.get("statement", ""))[:80])()


@attestations.command("verify")
@db_option
@json_option
@click.pass_context
def attestations_verify(ctx: click.Context, db: Path | None, as_json: bool) -> None:
    """Check every chained attestation against the roster: exit 1 when any does not hold.

    Example: govkit attestations verify
    """
    found = _attestations(ctx, db)
    if as_json:
        echo_json({"ok": not found.invalid, "valid": len(found.valid), "invalid": found.invalid})
    else:
        click.echo(f"{'OK' if not found.invalid else 'FAILED'}: {len(found.valid)} attestation(s) hold"
                   + (f", {len(found.invalid)} do not" if found.invalid else ""))
        for bad in found.invalid:
            click.echo(f"  seq {bad['seq']} ({bad['kind']}): {bad['why']}")
    if found.invalid:
        ctx.exit(1)


@attestations.command("revoke")
@click.option("--record", "record_id", help="Revoke one statement (its record id).")
@click.option("--key-id", help="Revoke a person's key: nothing it signed holds from now on.")
@click.option("--reason", help="Why (redacted).")
@key_option
@key_in_project_option
@db_option
@click.pass_context
def attestations_revoke(ctx: click.Context, record_id: str | None, key_id: str | None, reason: str | None,
                        key_path: Path | None, key_in_project: bool, db: Path | None) -> None:
    """Revoke a statement or a key, signed with the model owner's key.

    Example: govkit attestations revoke --key-id ed25519:0123abcd... --reason "laptop lost" --key OWNER.key
    """
    from ..attest import record_attestation
    from ..audit.checkpoints import public_key_b64

    if bool(record_id) == bool(key_id):
        raise InputError("give --record or --key-id (one of them)", parameter="record")
    settings = settings_for(ctx, required=True)
    reason = reason or ask("Why", flag="--reason")
    key_path = key_path or Path(ask("The model owner's private key file", flag="--key"))
    private = _person_key(key_path, settings, key_in_project)
    if public_key_b64(private) != settings.people.owner_public_key:
        raise InputError("only the model owner's key revokes", file=key_path)
    with open_log(ctx, db) as log:
        record = record_attestation(log, settings, "revocation", {
            "record_id": record_id or "", "key_id": key_id or "", "reason": reason},
            private, subjects=[{"name": "revoked", "digest": {"sha256": _digest(record_id or key_id or "")}}])
    click.echo(f"Revoked {record_id or key_id} (record {record.record_id}).")


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()

