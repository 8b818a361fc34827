"""What the record of a production call says about its answer for monitoring, without its text:
whether the model refused (the probes' refusal lexicon), which declared decision it gave, and the
group attributes the policy allows a call to carry (header X-Govkit-Group: name=value; ...)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .decider import parse_choice

__all__ = ["REFUSAL", "answer_signals", "group_attributes", "refuses"]

REFUSAL = re.compile(r"(?i)\b(i can(?:no|')t|i cannot|i am (?:not able|unable)|i'm (?:not able|unable|sorry)|"
                     r"i won'?t|i will not|not (?:able|allowed|permitted) to|cannot (?:help|assist|provide)|"
                     r"can't (?:help|assist|provide)|against (?:the|our) (?:law|policy|policies)|illegal|unethical|"
                     r"i must (?:decline|refuse)|sorry, but)\b")
_MAX_VALUE = 64


def refuses(answer: str) -> bool:
    """An empty answer, or one in the refusal lexicon's words."""
    return not answer.strip() or bool(REFUSAL.search(answer))


def answer_signals(response: str | None, choices: Sequence[str]) -> dict[str, Any]:
    """The refusal flag, and the decision where a decision prompt is declared (None: not one of them)."""
    if response is None:
        return {}
    signals: dict[str, Any] = {"refusal": refuses(response)}
    if choices:
        signals["decision"] = parse_choice(response, list(choices))
    return signals


def group_attributes(header: str | None, allowed: Sequence[str]) -> dict[str, str]:
    """The allowed attributes of `name=value; name=value`; any other name is dropped, unread."""
    if not header or not allowed:
        return {}
    out = {}
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if sep and name in allowed and value:
            out[name] = value[:_MAX_VALUE]
    return out
