"""Redaction with real-looking values: checksummed cards, IBANs and SINs, and what must survive."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govkit.audit import AuditLog, Redactor
from govkit.audit.redact import luhn_valid


def luhn_complete(prefix: str) -> str:
    for check in "0123456789":
        if luhn_valid(prefix + check):
            return prefix + check
    raise AssertionError


def iban(country: str, bban: str) -> str:
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


SENSITIVE = [
    ("EMAIL", "jane.doe+claims@insurer.example.co.uk"),
    ("PAYMENT_CARD", "4111 1111 1111 1111"),            # Visa test number
    ("PAYMENT_CARD", "5500-0000-0000-0004"),            # Mastercard test number
    ("PAYMENT_CARD", "378282246310005"),                # Amex test number
    ("IBAN", "DE89 3704 0044 0532 0130 00"),
    ("IBAN", "GB82WEST12345698765432"),
    ("IBAN", iban("FR", "20041010050500013M02606")),
    ("CA_SIN", "046 454 286"),
    ("US_SSN", "123-45-6789"),
    ("PHONE", "(416) 555-0199"),
    ("PHONE", "+44 20 7946 0958"),
    ("IP_ADDRESS", "192.168.10.254"),
    ("IP_ADDRESS", "2001:db8:85a3::8a2e:370:7334"),
]


@pytest.mark.parametrize("entity,value", SENSITIVE)
def test_each_builtin_recognizer(entity: str, value: str) -> None:
    result = Redactor().redact(f"Client says: {value}, please check.")
    assert value not in result.text
    assert result.text == f"Client says: [{entity}], please check."
    assert result.counts == {entity: 1}


@pytest.mark.parametrize("text", [
    "4111 1111 1111 1112 fails Luhn",          # card with a bad check digit
    "GB00WEST12345698765432 fails mod-97",     # IBAN with bad check digits
    "SSN 000-12-3456 and 666-12-3456 are never issued",
    "order 12345678 shipped on 2026-11-22 at 10:30:15",
    "version 1.2.3.4.5 and ratio 3:2",
    "PO 123 456 789 is not a SIN (fails Luhn)",
])
def test_lookalikes_are_left_alone(text: str) -> None:
    assert Redactor().redact(text).text == text


@settings(max_examples=200)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60),
       st.lists(st.sampled_from(SENSITIVE), min_size=1, max_size=4))
def test_values_embedded_in_any_text_are_removed(noise: str, items: list) -> None:
    text = " ".join(f"{noise} {value} ." for _, value in items)
    result = Redactor().redact(text)
    for _, value in items:
        assert value not in result.text
    assert result.total >= len(items)


@settings(max_examples=200)
@given(st.from_regex(r"4[0-9]{14}", fullmatch=True))
def test_every_luhn_valid_card_number_is_redacted(prefix: str) -> None:
    number = luhn_complete(prefix)
    assert Redactor().redact(f"pay with {number} now").counts == {"PAYMENT_CARD": 1}


@pytest.mark.parametrize("text,expected", [
    ("from 192.168.10.254.", "from [IP_ADDRESS]."),
    ("hosts 10.0.0.1, 10.0.0.2; done", "hosts [IP_ADDRESS], [IP_ADDRESS]; done"),
    ("mail me: a.b@c.org.", "mail me: [EMAIL]."),
    ("ref 1 4111 1111 1111 1111 .", "ref 1 [PAYMENT_CARD] ."),
    ("card 4111 1111 1111 1111 10 ok", "card [PAYMENT_CARD] 10 ok"),
    ("000 046 454 286 .", "000 [CA_SIN] ."),
])
def test_values_at_sentence_ends(text: str, expected: str) -> None:
    assert Redactor().redact(text).text == expected


def test_policy_patterns() -> None:
    redactor = Redactor([("EMPLOYEE_ID", r"EMP-\d{6}")])
    assert redactor.redact("escalate to EMP-123456").text == "escalate to [EMPLOYEE_ID]"


ALL_VALUES = [value for _, value in SENSITIVE]
PROMPT = "Customer " + "; ".join(ALL_VALUES) + " asks about the loan."


def _disk_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_default_mode_keeps_raw_values_out_of_the_database_file(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db", create=True) as log:
        record = log.append("inference", prompt=PROMPT, response=f"Reply to {ALL_VALUES[0]}")
        raw = _disk_bytes(tmp_path / "audit.db")
        for value in ALL_VALUES:
            assert value.encode() not in raw, value
        assert record.redaction["mode"] == "redacted"
        assert record.redaction["entities"] == {"CA_SIN": 1, "EMAIL": 2, "IBAN": 3, "IP_ADDRESS": 2,
                                                "PAYMENT_CARD": 3, "PHONE": 2, "US_SSN": 1}
        assert "[IBAN]" in log.content(record)["prompt"]
        assert log.verify().ok


def test_digest_only_mode_stores_no_text(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db", redaction="digest-only", create=True) as log:
        record = log.append("inference", prompt=PROMPT, response="fine")
        assert log.content(record) == {}
        assert record.input_sha256 and record.content_mode == "digest-only"
        assert b"Customer" not in _disk_bytes(tmp_path / "audit.db")
        assert log.verify().ok


def test_full_mode_keeps_text_as_given(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.db", redaction="full", create=True) as log:
        record = log.append("inference", prompt=PROMPT)
        assert log.content(record)["prompt"] == PROMPT
        assert log.verify().ok


# Values at the edge of what each skip rule allows: Unicode digits, gaps of three separators,
# an international number of three digits, an IPv4 address of four, an IBAN whose letters keep
# its digits far apart (it must be searched for in the whole text, not around its digits).
EDGES = ["４１６ ５５５ ０１９９", "١٢٣-٤٥-٦٧٨٩", "+44 (20) (7946) 0958", "1 (416) 555 0199", "+1 (2) (3)", "8.8.4.4",
         iban("GB", "ABCDEFGHIJKL1234")]


@settings(max_examples=600)
@given(st.lists(st.one_of(st.sampled_from([value for _, value in SENSITIVE] + EDGES),
                          st.text(alphabet="0123456789 .:+@-()abcfXYZ٣\n", max_size=24)), max_size=6),
       st.sampled_from([" ", "", "-", ".", "("]))
def test_skipping_text_that_cannot_match_changes_nothing(parts: list[str], glue: str) -> None:
    """Recognizers are skipped for text without a digit run long enough for them (digits joined
    by at most three of " .()-") or without a character every match holds; the result must be
    what searching everything gives, Unicode digits included."""
    text = glue.join(parts)
    assert Redactor().redact(text) == Redactor(skip=False).redact(text)


def _presidio_analyzer():
    """Presidio's real AnalyzerEngine on a blank spaCy pipeline (no language model is shipped),
    with a deny-list recognizer for names, as an institution might configure one."""
    presidio = pytest.importorskip("presidio_analyzer")
    spacy = pytest.importorskip("spacy")
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    nlp = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank"}])
    nlp.nlp = {"en": spacy.blank("en")}
    registry = presidio.RecognizerRegistry()
    registry.add_recognizer(presidio.PatternRecognizer(supported_entity="PERSON", deny_list=["Wilhelmina", "Oosterhuis"]))
    return presidio.AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=["en"])


def test_presidio_as_an_engine_beside_the_builtin_recognizers(tmp_path: Path) -> None:
    from govkit.audit.redact import presidio_engine

    redactor = Redactor(engine=presidio_engine(_presidio_analyzer()))
    result = redactor.redact("Wilhelmina Oosterhuis (wil@example.com) called.")
    assert result.text == "[PERSON] [PERSON] ([EMAIL]) called." and result.counts == {"EMAIL": 1, "PERSON": 2}
    with AuditLog(tmp_path / "a.db", create=True, redaction_engine=presidio_engine(_presidio_analyzer())) as log:
        record = log.append("inference", prompt="Wilhelmina asks for a loan")
        assert log.content(record)["prompt"] == "[PERSON] asks for a loan"
    assert b"Wilhelmina" not in b"".join(p.read_bytes() for p in tmp_path.glob("a.db*"))


def test_the_presidio_engine_without_a_language_model_is_a_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("presidio_analyzer")
    from click.testing import CliRunner

    from govkit.cli import cli

    os.chdir(tmp_path)
    assert CliRunner().invoke(cli, ["init", "--yes"]).exit_code == 0
    config = tmp_path / "govkit.toml"
    config.write_text(config.read_text().replace('redaction_engine = "builtin"', 'redaction_engine = "presidio"'))
    result = CliRunner().invoke(cli, ["audit", "checkpoint"])
    assert result.exit_code == 2 and "needs the spaCy model" in result.output and "Traceback" not in result.output
    assert CliRunner().invoke(cli, ["audit", "verify"]).exit_code == 0  # reading needs no engine


SEPARATORS = {"no-break space": "\u00a0", "narrow no-break space": "\u202f", "thin space": "\u2009",
              "figure space": "\u2007", "ideographic space": "\u3000", "en dash": "\u2013", "em dash": "\u2014",
              "non-breaking hyphen": "\u2011", "hyphen": "\u2010", "minus sign": "\u2212"}
GROUPED = {"PAYMENT_CARD": "4111{s}1111{s}1111{s}1111", "IBAN": "GB82{s}WEST{s}1234{s}5698{s}7654{s}32",
           "CA_SIN": "046{s}454{s}286", "US_SSN": "078{s}05{s}1120", "PHONE": "+44{s}20{s}7946{s}0958"}


@pytest.mark.parametrize("separator", sorted(SEPARATORS))
@pytest.mark.parametrize("entity", sorted(GROUPED))
def test_every_unicode_space_and_dash_separates_digit_groups(entity: str, separator: str) -> None:
    """Groups separated by U+00A0, U+202F (French typography), U+2009, an en dash or U+2011 were
    not redacted."""
    value = GROUPED[entity].format(s=SEPARATORS[separator])
    text = f"Client note: {value}, please call back."
    redacted = Redactor().redact(text)
    assert redacted.text == f"Client note: [{entity}], please call back.", (separator, redacted.text)
    assert redacted.counts == {entity: 1}
