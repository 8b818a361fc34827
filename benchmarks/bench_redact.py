"""Redaction recall, precision and speed per entity type: govkit's recognizers against Microsoft
Presidio's pattern recognizers (`presidio-analyzer`, the same ones its AnalyzerEngine runs, without
a language model), on one corpus generated with Faker, in the same run.

    python benchmarks/bench_redact.py [--per-type 300] [--seed 7]

The corpus plants one value per sentence, in many formats and locales: cards with spaces, dots
and dashes; IBANs in either case; national and international phone numbers of several
countries; SSNs with and without separators; e-mail addresses with non-ASCII local parts and
domains; full-width digits; digit groups separated by Unicode spaces and dashes (no-break,
narrow no-break as in French typography, thin, figure and ideographic spaces; en and em dashes,
non-breaking hyphens, minus signs). Sentences holding look-alikes that are not personal data (amounts,
dates, order numbers, versions) measure precision. A detection counts when it overlaps the
planted span and names the same entity type.

Needs the `bench` extra: `pip install -e '.[bench]'` (Presidio's analyzer and Faker).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from govkit.audit.redact import Redactor  # noqa: E402

# govkit's entity name -> Presidio's
PRESIDIO = {"EMAIL": "EMAIL_ADDRESS", "PHONE": "PHONE_NUMBER", "PAYMENT_CARD": "CREDIT_CARD", "IBAN": "IBAN_CODE",
            "US_SSN": "US_SSN", "IP_ADDRESS": "IP_ADDRESS"}
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
# Separators other than ASCII's that people and word processors put between digit groups.
UNICODE_SPACES = ["\u00a0", "\u202f", "\u2009", "\u2007", "\u3000"]
UNICODE_DASHES = ["\u2010", "\u2011", "\u2013", "\u2014", "\u2212"]
TEMPLATES = ["Please update my records: {v}. Thanks.", "Customer wrote: \"my details are {v}\" on Monday.",
             "{v}", "Ref 2024-11-03, amount 1,250.00 EUR, contact {v} before 5pm.",
             "Kunde bittet um Rückruf ({v}), Vertrag Nr. 88-1204.", "Le client a donné {v} au guichet."]
NEGATIVES = ["Order 2024-11-03-7781 shipped, total 1,234.56 USD, version 3.14.159.",
             "The loan of 9000 DM over 36 months at 4.5% starts on 01.02.2025.",
             "Room 12, floor 3; call back at 10:30; ticket #4711-0815-2210.",
             "Model v2.3.1 scored 0.8731 on 12,345 rows (seed 424242).",
             "Invoice INV-20251102-000123 for 3 items, SKU 4006381333931.",
             "Coordinates 52.5200, 13.4050; elevation 34 m; build 1.2.3.4567."]


def corpus(per_type: int, seed: int) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """(text, [(start, end, govkit entity)]) samples, seeded."""
    from faker import Faker

    rng = random.Random(seed)
    fakers = {locale: Faker(locale) for locale in ("en_US", "en_GB", "de_DE", "fr_FR", "nl_NL", "en_CA", "it_IT",
                                                  "es_ES", "ja_JP")}
    for index, fake in enumerate(fakers.values()):
        fake.seed_instance(seed + index)
    samples: list[tuple[str, list[tuple[int, int, str]]]] = []

    def respaced(value: str) -> str:
        """A quarter of the values: their spaces and hyphens as one Unicode space or dash."""
        if rng.random() >= 0.25 or not any(c in value for c in " -"):
            return value
        space, dash = rng.choice(UNICODE_SPACES), rng.choice(UNICODE_DASHES)
        return value.replace(" ", space).replace("-", dash if rng.random() < 0.5 else space)

    def plant(entity: str, value: str) -> None:
        if entity in ("PAYMENT_CARD", "IBAN", "PHONE", "US_SSN"):
            value = respaced(value)
        template = rng.choice(TEMPLATES)
        start = template.index("{v}")
        text = template.replace("{v}", value)
        samples.append((text, [(start, start + len(value), entity)]))

    us = fakers["en_US"]
    for _ in range(per_type):
        digits = us.credit_card_number(card_type=rng.choice(["visa16", "mastercard", "amex", "discover"]))
        groups = [digits[i:i + 4] for i in range(0, len(digits), 4)]
        separator = rng.choice(["", " ", "-", "."])
        value = separator.join(groups)
        plant("PAYMENT_CARD", value.translate(FULL_WIDTH) if rng.random() < 0.1 else value)
    for _ in range(per_type):
        fake = fakers[rng.choice(["de_DE", "fr_FR", "nl_NL", "en_GB", "it_IT", "es_ES"])]
        iban = fake.iban()
        if rng.random() < 0.5:
            iban = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        plant("IBAN", iban.lower() if rng.random() < 0.3 else iban)
    for _ in range(per_type):
        locale = rng.choice(["en_US", "en_GB", "de_DE", "fr_FR", "nl_NL", "en_CA", "it_IT", "es_ES"])
        number = fakers[locale].phone_number()
        plant("PHONE", number.translate(FULL_WIDTH) if rng.random() < 0.05 else number)
    for _ in range(per_type):
        ssn = us.ssn()
        plant("US_SSN", ssn.replace("-", "") if rng.random() < 0.4 else ssn)
    for _ in range(per_type):
        fake = fakers[rng.choice(list(fakers))]
        email = fake.email()
        if rng.random() < 0.2:
            local, domain = email.split("@")
            email = rng.choice(["josé", "zoë", "müller", "françois", "øyvind"]) + "." + local + "@" + domain
        if rng.random() < 0.1:
            email = email.split("@")[0] + "@" + rng.choice(["bücher.de", "exämple.com", "пример.рф"])
        plant("EMAIL", email)
    for _ in range(per_type):
        plant("IP_ADDRESS", us.ipv4() if rng.random() < 0.7 else us.ipv6())
    for _ in range(per_type):
        samples.append((rng.choice(NEGATIVES), []))
    rng.shuffle(samples)
    return samples


def presidio_recognizers() -> list[Any]:
    import inspect

    import tldextract
    from presidio_analyzer import predefined_recognizers as pr

    # Offline: Presidio's e-mail recognizer asks tldextract, which would fetch the suffix list.
    inspect.getmodule(pr.EmailRecognizer).tldextract.extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    return [pr.CreditCardRecognizer(), pr.IbanRecognizer(), pr.EmailRecognizer(), pr.PhoneRecognizer(),
            pr.UsSsnRecognizer(), pr.IpRecognizer()]


def presidio_spans(recognizers: list[Any], text: str) -> list[tuple[int, int, str]]:
    back = {v: k for k, v in PRESIDIO.items()}
    found = []
    for recognizer in recognizers:
        for result in recognizer.analyze(text, recognizer.supported_entities, None):
            if result.entity_type in back:
                found.append((result.start, result.end, back[result.entity_type]))
    return found


def govkit_spans(redactor: Redactor, text: str) -> list[tuple[int, int, str]]:
    return [(s, e, "PHONE" if name == "PHONE" else name) for s, e, name in redactor.spans(text)
            if name in PRESIDIO]


def score(samples: list, detect: Any) -> dict[str, dict[str, float]]:
    hits = {t: [0, 0, 0] for t in PRESIDIO}  # planted, found, detections (for precision: [tp, all])
    true_detections = {t: 0 for t in PRESIDIO}
    detections = {t: 0 for t in PRESIDIO}
    for text, planted in samples:
        found = detect(text)
        for start, end, entity in planted:
            hits[entity][0] += 1
            if any(e == entity and s < end and start < f for s, f, e in found):
                hits[entity][1] += 1
        for s, f, e in found:
            detections[e] += 1
            if any(e == entity and s < end and start < f for start, end, entity in planted):
                true_detections[e] += 1
    return {t: {"recall": hits[t][1] / hits[t][0] if hits[t][0] else float("nan"),
                "precision": true_detections[t] / detections[t] if detections[t] else 1.0,
                "planted": hits[t][0], "detections": detections[t]} for t in PRESIDIO}


def timed(samples: list, detect: Any, repeats: int = 3) -> float:
    """Median seconds for the whole corpus."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for text, _ in samples:
            detect(text)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-type", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    samples = corpus(args.per_type, args.seed)
    redactor = Redactor()
    recognizers = presidio_recognizers()
    ours = score(samples, lambda t: govkit_spans(redactor, t))
    theirs = score(samples, lambda t: presidio_spans(recognizers, t))
    print(f"redaction on {len(samples)} generated sentences ({args.per_type} per entity type, seed {args.seed})\n")
    print(f"  {'entity':<13} {'govkit recall':>13} {'Presidio':>9}   {'govkit precision':>16} {'Presidio':>9}")
    worse = []
    for entity in PRESIDIO:
        a, b = ours[entity], theirs[entity]
        print(f"  {entity:<13} {a['recall']:13.3f} {b['recall']:9.3f}   {a['precision']:16.3f} {b['precision']:9.3f}")
        if a["recall"] < b["recall"] or a["precision"] < b["precision"]:
            worse.append(entity)
    ours_s = timed(samples, lambda t: govkit_spans(redactor, t))
    theirs_s = timed(samples, lambda t: presidio_spans(recognizers, t))
    per = 1e6 / len(samples)
    print(f"\n  speed: govkit {ours_s * per:.1f} us per sentence, Presidio {theirs_s * per:.1f} us "
          f"-> {theirs_s / ours_s:.1f}x (goal >= 10x)")
    print("  -> per entity, govkit's recall and precision are at least Presidio's" if not worse else
          f"  -> below Presidio on: {', '.join(worse)}")


if __name__ == "__main__":
    main()
