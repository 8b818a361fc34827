"""Redaction before anything reaches disk.

Built-in recognizers find e-mail addresses (non-ASCII ones too), phone numbers (national numbers
of several countries checked by `phonenumbers`), payment cards (Luhn-valid; spaces, dashes or
dots), IBANs (ISO 13616 mod-97-valid, either case), Canadian SINs (Luhn-valid), US SSNs (SSA
issuance rules, with or without separators) and IPv4/IPv6 addresses; the policy adds its own
regexes. Digits of other scripts (full-width ones) are read as the digits they are, and every
Unicode space and dash between digit groups as a space and a hyphen. Candidates
that fail their checksum are left alone, so order numbers and timestamps are not mangled.
Overlaps go to the more specific recognizer. benchmarks/bench_redact.py measures recall and
precision per entity type against Presidio's recognizers on one generated corpus.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .._lazy import require

__all__ = ["ENGINES", "Redactor", "Redaction", "presidio_engine"]

ENGINES = ("builtin", "presidio")  # [audit] redaction_engine

# An engine beside the built-in recognizers: text -> [(start, end, entity)].
Engine = Callable[[str], "list[tuple[int, int, str]]"]


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card(match: re.Match[str]) -> tuple[int, int] | None:
    # The run may carry neighbouring digit groups ("4111 1111 1111 1111 42"): try every span
    # between group boundaries, longest first, and keep the first Luhn-valid one.
    text, offset = match.group(), match.start()
    starts = [0] + [i + 1 for i, c in enumerate(text) if not c.isdigit()]
    ends = [i for i, c in enumerate(text) if not c.isdigit()] + [len(text)]
    spans = sorted(((a, b) for a in starts for b in ends if b > a), key=lambda ab: ab[0] - ab[1])
    for start, end in spans:
        digits = re.sub(r"\D", "", text[start:end])
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return offset + start, offset + end
    return None


def _sin(match: re.Match[str]) -> tuple[int, int] | None:
    digits = re.sub(r"\D", "", match.group())
    return match.span() if luhn_valid(digits) else None


def _iban(match: re.Match[str]) -> tuple[int, int] | None:
    # The pattern is greedy over letter and digit groups; keep the longest prefix that checks out.
    text, start = match.group(), match.start()
    positions = [i for i, c in enumerate(text) if c not in " -"]
    compact = "".join(text[i] for i in positions).upper()
    for length in range(min(len(compact), 34), 14, -1):
        candidate = compact[:length]
        rearranged = candidate[4:] + candidate[:4]
        number = "".join(str(int(c, 36)) for c in rearranged)
        if int(number) % 97 == 1:
            return start, start + positions[length - 1] + 1
    return None


def _ipv6(match: re.Match[str]) -> tuple[int, int] | None:
    try:
        ipaddress.IPv6Address(match.group())
    except ValueError:
        return None
    return match.span()


def _plain(match: re.Match[str]) -> tuple[int, int] | None:
    return match.span()


_DATE = re.compile(r"\d{1,2}[./-]\d{1,2}[./-](?:1[89]|2\d)\d\d")  # 01.02.2025: a date, not a phone

# Regions whose national numbers (with their trunk 0) the national phone recognizer checks.
PHONE_REGIONS = ("GB", "DE", "FR", "NL", "IT", "BE", "AT", "CH", "IE", "SE", "DK", "NO", "FI", "PL", "AU")


@functools.lru_cache(maxsize=1)
def _phonenumbers() -> object | None:
    try:
        import phonenumbers
    except ImportError:  # pragma: no cover - a dependency; without it only the patterns below find phones
        return None
    return phonenumbers


def _national_phone(match: re.Match[str]) -> tuple[int, int] | None:
    """A national number (trunk prefix 0) that `phonenumbers` finds valid in one of PHONE_REGIONS."""
    library = _phonenumbers()
    if library is None:
        return None
    text = match.group()
    if sum(c.isdigit() for c in text) < 7:  # shorter ones are service numbers, not a person's line
        return None
    if _DATE.fullmatch(text):
        return None
    for region in PHONE_REGIONS:
        try:
            number = library.parse(text, region)  # type: ignore[attr-defined]
        except Exception:  # NumberParseException
            continue
        if library.is_valid_number(number):  # type: ignore[attr-defined]
            return match.span()
    return None


_Validator = Callable[[re.Match[str]], "tuple[int, int] | None"]

# What a text must hold for a recognizer to match in it, so that the others are never searched
# for (most prompts hold no e-mail address and no long number): a substring or pattern every
# match contains; how long a digit run must be; whether it must hold three dots; where a match
# can be. A digit run is digits joined by at most three of " .()-": the recognizers that count
# digits join them only with those, at most three at a time, so all of a match's digits lie in
# one run.
_ANYWHERE = 0
_AROUND_RUN = 1  # inside a long enough run: only the stretches around those are searched
_BEFORE_RUN = 2  # starting two capitals before a run (an IBAN's country code and check digits)
_Need = tuple["str | re.Pattern[str]", int, bool, int]
_EVERY_TEXT: _Need = ("", 0, False, _ANYWHERE)  # no skipping: policy patterns, and Redactor(skip=False)
_IPV6_COLONS = re.compile(r":[0-9A-Fa-f]{0,4}:")

# (entity, pattern, validator, what a text must hold for it). Most specific first: the order
# breaks ties between overlapping candidates.
BUILTIN: tuple[tuple[str, re.Pattern[str], _Validator, _Need], ...] = (
    ("EMAIL", re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}"), _plain, ("@", 0, False, _ANYWHERE)),
    ("IBAN", re.compile(r"\b[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]){11,32}\b"), _iban, ("", 2, False, _BEFORE_RUN)),
    ("PAYMENT_CARD", re.compile(r"(?<![\d-])\d(?:[ .-]?\d){12,18}(?![\d-])"), _card, ("", 13, False, _AROUND_RUN)),
    ("PHONE", re.compile(r"(?<![\w+])\+[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,6}(?!\d)"), _plain,
     ("+", 3, False, _AROUND_RUN)),  # international
    ("US_SSN", re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}([- ]?)(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])"), _plain,
     ("", 9, False, _AROUND_RUN)),
    ("CA_SIN", re.compile(r"(?<![\d-])\d{3}([- ]?)\d{3}\1\d{3}(?![\d-])"), _sin, ("", 9, False, _AROUND_RUN)),
    ("IP_ADDRESS", re.compile(r"(?<![0-9A-Fa-f:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
                              r"(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![0-9A-Fa-f:])"), _ipv6,
     (_IPV6_COLONS, 0, False, _ANYWHERE)),  # IPv6: two colons at most four hex digits apart
    ("IP_ADDRESS", re.compile(r"(?<!\d)(?<!\d\.)(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
                              r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\d|\.\d)"), _plain,
     (".", 4, True, _AROUND_RUN)),  # IPv4: four numbers joined by three dots
    ("PHONE", re.compile(r"(?<![\w+])(?:\+?1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}(?!\d)"), _plain,
     ("", 10, False, _AROUND_RUN)),
    ("PHONE", re.compile(r"(?<![\w+#/-])\(?0\d{1,4}\)?(?:[ .-]?\d{2,8}){1,4}(?!\d)"), _national_phone,
     ("0", 7, False, _AROUND_RUN)),  # national, checked by phonenumbers
)
_CAPITALS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")  # an IBAN's country code, either case
# Digits of other scripts read as ASCII ones (one character for one, so spans stay): full-width,
# Arabic-Indic, extended Arabic-Indic and Devanagari.
_DIGITS = {block + i: ord("0") + i for block in (0xFF10, 0x0660, 0x06F0, 0x0966) for i in range(10)}


@functools.cache
def _unicode_to_ascii() -> dict[int, int]:
    """The digits above, and every Unicode space (category Zs: no-break, narrow no-break as French
    typography puts between digit groups, thin, figure, ideographic ...) and dash (category Pd:
    hyphen, non-breaking hyphen, en and em dash ..., and the minus sign) read as ASCII's space and
    hyphen: one character for one, so spans stay where they are."""
    import unicodedata

    table = dict(_DIGITS)
    for code in range(0x80, 0x10000):
        category = unicodedata.category(chr(code))
        if category == "Zs":
            table[code] = 0x20
        elif category == "Pd" or code == 0x2212:
            table[code] = 0x2D
    return table
_DIGIT_RUN = re.compile(r"\d(?:[ .()\-]{0,3}\d)*")
# Around a run: a match starts at most one character before it ("+" or "("), ends at most one
# after it (")"), and its lookaheads read at most two more, all inside the searched stretch.
_MARGIN = 4


def _digit_runs(text: str) -> list[tuple[int, int, int, bool]]:
    """(start, end, digits, holds three dots or more) of each digit run. Runs shorter than five
    characters count every character as a digit: too many, never too few, and cheap."""
    runs = []
    for match in _DIGIT_RUN.finditer(text):
        start, end = match.span()
        digits, dotted = end - start, False
        if digits >= 5:
            run = match.group()
            dots = run.count(".")
            digits -= dots + run.count(" ") + run.count("-") + run.count("(") + run.count(")")
            dotted = dots >= 3
        runs.append((start, end, digits, dotted))
    return runs


def _stretches(runs: list[tuple[int, int, int, bool]], fewest: int, dotted: bool,
               size: int) -> list[tuple[int, int]]:
    """The stretches of text around the runs that may hold a match, overlapping ones joined."""
    stretches: list[tuple[int, int]] = []
    for start, end, digits, dots in runs:
        if digits < fewest or (dotted and not dots):
            continue
        low, high = max(0, start - _MARGIN), min(size, end + _MARGIN)
        if stretches and low <= stretches[-1][1]:
            stretches[-1] = (stretches[-1][0], high)
        else:
            stretches.append((low, high))
    return stretches


def _after_two_capitals(runs: list[tuple[int, int, int, bool]], fewest: int, text: str) -> list[int]:
    """Where a match may start that begins with two capitals and then a run's first digits."""
    return [start - 2 for start, _, digits, _ in runs
            if digits >= fewest and start >= 2 and text[start - 2] in _CAPITALS and text[start - 1] in _CAPITALS]


@dataclass(frozen=True)
class Redaction:
    text: str
    counts: dict[str, int]  # entity type -> how many were removed

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class Redactor:
    """Replaces recognised personal data with `[ENTITY]` placeholders."""

    def __init__(self, patterns: Iterable[tuple[str, str]] = (), *, skip: bool = True, engine: Engine | None = None):
        """`skip=False` searches every text for every recognizer: the same results, slower (to
        check the skips against). `engine` finds more (names, places: what needs a language
        model, such as Presidio's analyzer); the built-in recognizers win where both find something."""
        self.engine = engine
        self.recognizers: list[tuple[str, re.Pattern[str], _Validator, _Need]] = [
            (name, pattern, validate, need if skip else _EVERY_TEXT) for name, pattern, validate, need in BUILTIN
        ] + [(name, re.compile(regex), _plain, _EVERY_TEXT) for name, regex in patterns]

    def redact(self, text: str) -> Redaction:
        chosen = self.spans(text)
        if not chosen:
            return Redaction(text, {})
        parts: list[str] = []
        counts: dict[str, int] = {}
        cursor = 0
        for start, end, name in chosen:
            parts.append(text[cursor:start])
            parts.append(f"[{name}]")
            counts[name] = counts.get(name, 0) + 1
            cursor = end
        parts.append(text[cursor:])
        return Redaction("".join(parts), dict(sorted(counts.items())))

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, entity) of each piece of personal data found, in text order."""
        if not text.isascii():
            text = text.translate(_unicode_to_ascii())
        chosen: list[tuple[int, int, str]] = []
        runs: list[tuple[int, int, int, bool]] | None = None
        for name, pattern, validate, (needed, fewest, dotted, where) in self.recognizers:
            if isinstance(needed, str):
                if needed not in text:
                    continue
            elif needed.search(text) is None:
                continue
            stretches = [(0, len(text))]
            if where != _ANYWHERE:
                if runs is None:
                    runs = _digit_runs(text)
                if where == _BEFORE_RUN:
                    position = 0
                    for start in _after_two_capitals(runs, fewest, text):
                        if start >= position and (match := pattern.match(text, start)):
                            position = _consider(match, name, validate, chosen)
                    continue
                stretches = _stretches(runs, fewest, dotted, len(text))
            for low, high in stretches:
                position = low
                while match := pattern.search(text, position, high):
                    position = _consider(match, name, validate, chosen)
        if self.engine is not None:
            for start, end, name in self.engine(text):
                if start < end and not any(start < c_end and c_start < end for c_start, c_end, _ in chosen):
                    chosen.append((start, end, name))
        chosen.sort()
        return chosen


def _consider(match: re.Match[str], name: str, validate: _Validator, chosen: list[tuple[int, int, str]]) -> int:
    """Keep a candidate that validates and overlaps nothing kept; return where to search next."""
    span = validate(match)
    if span is None or span[0] == span[1]:
        # A rejected candidate may hide a valid one that starts inside it
        # ("000 046 454 286": the SIN begins at the second group).
        return match.start() + 1
    start, end = span
    if not any(start < c_end and c_start < end for c_start, c_end, _ in chosen):
        chosen.append((start, end, name))
    return max(end, match.start() + 1)


PRESIDIO_MODEL = "en_core_web_lg"  # the model Presidio's default analyzer loads


def presidio_engine(analyzer: Any = None, *, language: str = "en", min_score: float = 0.5) -> Engine:
    """Presidio's analyzer as an engine: every entity it finds with at least `min_score`. With no
    `analyzer`, Presidio's default one, which needs the institution's spaCy model installed."""
    AnalyzerEngine = require("presidio_analyzer", "presidio").AnalyzerEngine
    if analyzer is None:
        import spacy.util

        # Presidio's default analyzer downloads its spaCy model when it is missing: govkit makes no
        # network call of its own accord, so the model must be installed first.
        if not spacy.util.is_package(PRESIDIO_MODEL):
            from ..errors import InputError

            raise InputError(f"[audit] redaction_engine = \"presidio\" needs the spaCy model {PRESIDIO_MODEL} for "
                             f"Presidio's analyzer; install it from your package mirror (govkit downloads nothing)")
        analyzer = AnalyzerEngine()

    def find(text: str) -> list[tuple[int, int, str]]:
        return [(r.start, r.end, r.entity_type) for r in analyzer.analyze(text, language=language)
                if r.score >= min_score]

    return find
