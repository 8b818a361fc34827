"""The report's manifest: its evidence snapshot, the digests of its inputs and outputs, and
govkit's and the renderer's versions, signed with the device key (Ed25519, deterministic: the
same manifest always gets the same signature). It is embedded in each output, and an output's
digest is taken over the document without that embedded block."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from ..audit.checkpoints import key_id, public_key_b64
from ..audit.hashing import canonical_json
from ..digests import sha256_digest
from ..errors import InputError

__all__ = ["digest_of", "embed", "extract", "sign", "signature_valid", "strip"]

_HTML_BLOCK = re.compile(r'\n?<script type="application/json" id="govkit-manifest">(.*?)</script>', re.S)
_MD_BLOCK = re.compile(r"\n?<!-- govkit-manifest ([A-Za-z0-9+/=]*) -->\n?", re.S)


def sign(manifest: dict[str, Any], private_key: Any) -> dict[str, Any]:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    signature = private_key.sign(canonical_json(body))
    return {**body, "signature": {"key_id": key_id(public_key_b64(private_key)),
                                  "value": base64.b64encode(signature).decode("ascii")}}


def signature_valid(manifest: dict[str, Any], public_b64: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        body = {k: v for k, v in manifest.items() if k != "signature"}
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64))
        key.verify(base64.b64decode(manifest["signature"]["value"]), canonical_json(body))
    except (InvalidSignature, KeyError, ValueError, TypeError):
        return False
    return True


def digest_of(document: str) -> str:
    """An output's digest: of the document as rendered, without its embedded manifest."""
    return sha256_digest(strip(document))


def embed(document: str, manifest: dict[str, Any], fmt: str) -> str:
    """The document with its manifest: an inert JSON data block before </body> (HTML), or a base64
    comment at the end (Markdown). JSON outputs are the manifest itself."""
    text = json.dumps(manifest, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    if fmt == "html":
        safe = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        block = f'\n<script type="application/json" id="govkit-manifest">{safe}</script>'
        at = document.rindex("</body>")
        return document[:at] + block + document[at:]
    if fmt == "md":
        return document + f"\n<!-- govkit-manifest {base64.b64encode(text.encode('ascii')).decode('ascii')} -->\n"
    raise InputError(f"no embedded manifest in the {fmt} format", parameter="format")


def extract(document: str, *, source: object) -> dict[str, Any]:
    """The manifest embedded in an HTML or Markdown report, or the JSON report itself."""
    found = _HTML_BLOCK.search(document)
    try:
        if found:
            manifest = json.loads(found.group(1))
        elif (comment := _MD_BLOCK.search(document)) is not None:
            manifest = json.loads(base64.b64decode(comment.group(1)))
        else:
            data = json.loads(document)
            manifest = data["manifest"] if "manifest" in data else data if "snapshot" in data else data["manifest"]
    except (ValueError, KeyError, TypeError):
        raise InputError("no readable govkit manifest in it: not a govkit report, or cut short", file=source) from None
    if not isinstance(manifest, dict):
        raise InputError("its manifest is not a JSON object", file=source)
    return manifest


def strip(document: str) -> str:
    """The document without its embedded manifest block."""
    return _MD_BLOCK.sub("", _HTML_BLOCK.sub("", document, count=1), count=1)
