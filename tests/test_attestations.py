"""People sign: a roster signed by the model owner, reviews and approvals as in-toto Statements
in DSSE envelopes that in-toto's own library verifies, checks that read signatures (never the
names in govkit.toml), and every way a signature can fail to count: a wrong key, an edited
statement, the wrong role, another model file, a revoked key, a stale review."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from pathlib import Path

import pytest

from govkit.audit import AuditLog
from govkit.audit.checkpoints import key_id, load_private_key, public_key_b64
from govkit.checks import Context, Status, run_checks
from govkit.config import load_settings
from govkit.gate import load_registry

from .conftest import run
from .servers import smollm2_gguf

TODAY = dt.date.today()


@pytest.fixture
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    place = tmp_path_factory.mktemp("people-keys")  # outside the project folder
    made = {}
    for person in ("owner", "developer", "reviewer", "approver", "outsider"):
        assert run("keygen", "--person", person, "-o", str(place / f"{person}.key")).exit_code == 0
        made[person] = place / f"{person}.key"
    return made


def public(path: Path) -> str:
    return public_key_b64(load_private_key(path))


@pytest.fixture
def project(tmp_path: Path, keys: dict[str, Path]) -> Path:
    assert run("init", "--yes", "--model-id", "credit-assistant").exit_code == 0
    assert run("lineage", "model", "add", str(smollm2_gguf()), "--name", "smollm2.gguf").exit_code == 0
    assert run("lineage", "link", "smollm2.gguf", "deployment").exit_code == 0
    assert run("people", "init", "--name", "Olive Owner", "--key", str(keys["owner"])).exit_code == 0
    for name, person, role in (("Dev Eloper", "developer", "developer"), ("Val Idator", "reviewer", "reviewer"),
                               ("Ann Prover", "approver", "approver")):
        result = run("people", "add", name, "--role", role, "--public-key", public(keys[person]),
                     "--key", str(keys["owner"]))
        assert result.exit_code == 0, result.output
    return tmp_path


def sign(keys: dict[str, Path], person: str, *args: str):
    return run(*args, "--key", str(keys[person]))


def review(keys: dict[str, Path], recommendation: str = "approve", person: str = "reviewer"):
    return sign(keys, person, "review", "sign", "--recommendation", recommendation, "--finding", "holds on the holdout")


def approve(keys: dict[str, Path], person: str = "approver"):
    return sign(keys, person, "approve", "--residual-risk", "moderate", "--valid-until",
                str(TODAY + dt.timedelta(days=90)))


def results(folder: Path, *check_ids: str) -> dict:
    registry = load_registry(())
    context = Context(load_settings(folder / "govkit.toml"))
    try:
        found = run_checks([registry.specs[c] for c in check_ids], context)
    finally:
        context.close()
    return {r.spec.id: r for r in found}


def chained(folder: Path, kind: str) -> list:
    with AuditLog.open(settings=load_settings(folder / "govkit.toml"), read_only=True) as log:
        return [r for r in log.query(event_type="attestation") if r.details["kind"] == kind]


def test_in_totos_own_library_verifies_the_envelope_govkit_wrote(project: Path, keys: dict[str, Path]) -> None:
    from in_toto.models.metadata import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey

    assert review(keys).exit_code == 0
    [record] = chained(project, "review")
    envelope = record.details["envelope"]
    reviewer = public(keys["reviewer"])
    key = SSlibKey(key_id(reviewer), "ed25519", "ed25519", {"public": base64.b64decode(reviewer).hex()})
    import copy

    assert set(Envelope.from_dict(copy.deepcopy(envelope)).verify([key], 1)) == {key_id(reviewer)}
    body = json.loads(base64.b64decode(envelope["payload"]))
    assert body["_type"] == "https://in-toto.io/Statement/v1"
    assert body["predicateType"] == "https://govkit.dev/attestation/review/v1"
    import hashlib

    gguf = hashlib.sha256(smollm2_gguf().read_bytes()).hexdigest()
    assert {"sha256": gguf} in [s["digest"] for s in body["subject"]]  # the exact model file
    names = [s["name"] for s in body["subject"]]
    assert "govkit-evidence-head" in names and "govkit-policy" in names  # the evidence and the policy it saw
    outsider = public(keys["outsider"])
    other = SSlibKey(key_id(reviewer), "ed25519", "ed25519", {"public": base64.b64decode(outsider).hex()})
    with pytest.raises(VerificationError):
        Envelope.from_dict(copy.deepcopy(envelope)).verify([other], 1)


def test_a_review_and_an_approval_by_the_right_keys_pass_and_names_in_govkit_toml_prove_nothing(
        project: Path, keys: dict[str, Path]) -> None:
    from .test_checks import edit_config

    edit_config(project, "model", reviewer="Val Idator", approver="Ann Prover", developer="Dev Eloper",
                deployment_date=str(TODAY - dt.timedelta(days=3)))
    before = results(project, "GOV-007", "GOV-008", "GOV-020")
    assert all(r.status is Status.NO_EVIDENCE for r in before.values()), {k: r.message for k, r in before.items()}
    assert review(keys).exit_code == 0 and approve(keys).exit_code == 0
    after = results(project, "GOV-007", "GOV-008", "GOV-020")
    assert all(r.status is Status.PASS for r in after.values()), {k: r.message for k, r in after.items()}
    listed = run("attestations", "verify")
    assert listed.exit_code == 0 and "OK: 2 attestation(s) hold" in listed.output


def test_every_way_a_signature_fails_to_count(project: Path, keys: dict[str, Path]) -> None:
    from govkit.attest import record_attestation, sign_statement, statement

    settings = load_settings(project / "govkit.toml")
    assert review(keys).exit_code == 0 and approve(keys).exit_code == 0
    # the wrong role: the command refuses at once, and a statement signed all the same does not count
    refused = review(keys, person="developer")
    assert refused.exit_code == 2 and "a review is signed by a reviewer" in refused.output
    with AuditLog.open(settings=settings) as log:
        record_attestation(log, settings, "review", {"recommendation": "approve", "findings": ["mine"]},
                           load_private_key(keys["developer"]))
        # a key that is not on the roster
        record_attestation(log, settings, "approval", {"tier": "unrated", "residual_risk": "none",
                                                       "valid_until": "2099-01-01"}, load_private_key(keys["outsider"]))
        # an edited statement: the reviewer's envelope with the recommendation changed after signing
        [genuine] = [r for r in log.query(event_type="attestation") if r.details["kind"] == "review"][:1]
        forged = dict(genuine.details["envelope"])
        body = json.loads(base64.b64decode(forged["payload"]))
        body["predicate"]["findings"] = ["nothing to report"]
        forged["payload"] = base64.b64encode(json.dumps(body).encode()).decode()
        log.append("attestation", details={"kind": "review", "key_id": genuine.details["key_id"], "envelope": forged})
        # another model file: a genuine approval whose subject is not the model under review
        other = statement("approval", [{"name": "model-artifact:other", "digest": {"sha256": "ab" * 32}}],
                          {"tier": "unrated", "residual_risk": "low", "valid_until": "2099-01-01"})
        log.append("attestation", details={"kind": "approval", "key_id": key_id(public(keys["approver"])),
                                           "envelope": sign_statement(other, load_private_key(keys["approver"]))})
    verified = run("attestations", "verify", "--json")
    assert verified.exit_code == 1
    reasons = [bad["why"] for bad in json.loads(verified.output)["invalid"]]
    assert any("may not sign a review" in why for why in reasons), reasons
    assert sum("not signed by a current roster key" in why for why in reasons) == 2, reasons
    found = results(project, "GOV-007", "GOV-008", "GOV-020")
    assert found["GOV-008"].status is Status.PASS  # the genuine approval still holds; the others are set aside
    context = Context(settings)
    try:
        approvals = context.attestations.of_kind("approval")
        about = context.attestations.about("approval", context.reviewed_artifacts)
    finally:
        context.close()
    assert len(approvals) == 2 and len(about) == 1  # the one over another file counts for nothing here
    # a revoked key: nothing it signed holds any more
    assert sign(keys, "owner", "attestations", "revoke", "--key-id", key_id(public(keys["approver"])),
                "--reason", "laptop lost").exit_code == 0
    revoked = results(project, "GOV-008")["GOV-008"]
    assert revoked.status is Status.NO_EVIDENCE and revoked.blocking, revoked.message
    assert approve(keys).exit_code == 2  # and the revoked key cannot sign again


def test_a_model_swapped_after_approval_is_not_approved_and_calls_for_a_new_review(
        project: Path, keys: dict[str, Path], tmp_path: Path) -> None:
    assert review(keys).exit_code == 0 and approve(keys).exit_code == 0
    swapped = tmp_path / "swapped.gguf"
    swapped.write_bytes(smollm2_gguf().read_bytes() + b"\0")  # another file: the same model, other bytes
    assert run("lineage", "model", "add", str(swapped), "--name", "swapped.gguf").exit_code == 0
    assert run("lineage", "link", "swapped.gguf", "deployment").exit_code == 0
    found = results(project, "GOV-008", "GOV-020", "GOV-021")
    assert found["GOV-008"].status is Status.NO_EVIDENCE and "over another model file" in found["GOV-008"].message
    assert found["GOV-020"].status is Status.NO_EVIDENCE
    assert found["GOV-021"].status is Status.NO_EVIDENCE and "1 over another model file" in found["GOV-021"].message


def test_a_stale_or_rejecting_review_fails_and_the_trigger_is_named(project: Path, keys: dict[str, Path]) -> None:
    from .test_checks import edit_config

    assert review(keys).exit_code == 0 and approve(keys).exit_code == 0
    with AuditLog.open(settings=load_settings(project / "govkit.toml")) as log:
        log.append("incident", model_id="credit-assistant", details={"kind": "complaint"})
    found = results(project, "GOV-021")["GOV-021"]
    assert found.status is Status.WARN and "incident (seq" in found.message
    edit_config(project, "people", review_max_age_days=-1)
    assert results(project, "GOV-020")["GOV-020"].status is Status.FAIL
    edit_config(project, "people", review_max_age_days=365)
    assert review(keys, "reject").exit_code == 0
    found = results(project, "GOV-008", "GOV-020")
    assert found["GOV-020"].status is Status.FAIL and "recommends rejection" in found["GOV-020"].message
    assert found["GOV-008"].status is Status.FAIL and "recommends rejection" in found["GOV-008"].message


def test_keys_are_handled_as_a_signing_key_should_be(project: Path, keys: dict[str, Path]) -> None:
    loose = keys["reviewer"].with_name("loose.key")
    loose.write_bytes(keys["reviewer"].read_bytes())
    os.chmod(loose, 0o644)
    result = run("review", "sign", "--recommendation", "approve", "--finding", "x", "--key", str(loose))
    assert result.exit_code == 2 and "readable by others" in result.output
    inside = project / "reviewer.key"
    inside.write_bytes(keys["reviewer"].read_bytes())
    os.chmod(inside, 0o600)
    result = run("review", "sign", "--recommendation", "approve", "--finding", "x", "--key", str(inside))
    assert result.exit_code == 2 and "outside the project folder" in result.output
    assert run("review", "sign", "--recommendation", "approve", "--finding", "x", "--key", str(inside),
               "--key-in-project").exit_code == 0
    device = load_settings(project / "govkit.toml").audit.private_key
    result = run("review", "sign", "--recommendation", "approve", "--finding", "x", "--key", str(device),
                 "--key-in-project")
    assert result.exit_code == 2 and "device key" in result.output
    result = run("review", "sign", "--key", str(keys["reviewer"]))  # no terminal to ask on
    assert result.exit_code == 2 and "--recommendation" in result.output
    result = run("people", "add", "Mallory", "--role", "approver", "--public-key", public(keys["outsider"]),
                 "--key", str(keys["reviewer"]))  # only the owner signs the roster
    assert result.exit_code == 2 and "only the model owner's key" in result.output
    home = project.parent / "home"
    result = subprocess_keygen(home)
    assert result.returncode == 0 and str(home / ".govkit" / "keys" / "new-person.key") in result.stdout
    assert oct((home / ".govkit" / "keys" / "new-person.key").stat().st_mode & 0o777) == "0o600"


def subprocess_keygen(home: Path):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "govkit", "keygen", "--person", "New Person"], capture_output=True,
                          text=True, env={**os.environ, "HOME": str(home)})


def test_the_reports_say_who_signed_what_and_verify_checks_it(project: Path, keys: dict[str, Path]) -> None:
    import re

    assert review(keys, "reject").exit_code == 0
    assert run("report", "board", "--period", str(TODAY.year), "--format", "html", "-o", "board.html").exit_code == 0
    assert run("report", "model-card", "--period", str(TODAY.year), "--format", "md", "-o", "card.md").exit_code == 0
    page = re.sub(r"\s+", " ", (project / "board.html").read_text())
    assert "Val Idator (reviewer)" in page and "recommends <strong>reject</strong>: holds on the holdout" in page
    assert "recommends rejecting the model" in page  # page one says it
    card = (project / "card.md").read_text()
    assert "review by Val Idator (reviewer)" in card and "recommends reject" in card
    assert run("report", "verify", "board.html").exit_code == 0
    from .test_checks import edit_config

    edit_config(project, "people", owner_public_key=public(keys["outsider"]))  # another roster anchor
    result = run("report", "verify", "board.html")
    assert result.exit_code == 1 and "attestations" in result.output
