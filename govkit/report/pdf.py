"""The PDF of a report: its HTML printed by WeasyPrint as PDF/A-3b, with the signed manifest
attached as `govkit-manifest.json`. Byte-stable: SOURCE_DATE_EPOCH is the report's as-of time,
the PDF identifier is derived from the manifest, and nothing is fetched (no network, no file
outside the document)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

from .._lazy import require
from ..errors import InputError
from ..timestamps import parse_ts

__all__ = ["ATTACHMENT", "SYSTEM_PACKAGES", "manifest_of", "pdf_unavailable", "render_pdf", "renderer_version"]

ATTACHMENT = "govkit-manifest.json"
# What WeasyPrint needs from the system (Debian and Ubuntu package names).
SYSTEM_PACKAGES = "libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core"


def pdf_unavailable() -> str | None:
    """Why this machine cannot print a PDF (None: it can): WeasyPrint missing, or the system's
    Pango libraries it loads when imported."""
    try:
        import weasyprint  # noqa: F401
    except ImportError:
        return "WeasyPrint is not installed: pip install 'govkit[report]'"
    except OSError as exc:
        return (f"WeasyPrint cannot load the system's Pango libraries ({exc}); on Debian or Ubuntu: "
                f"sudo apt-get install {SYSTEM_PACKAGES}")
    return None


def renderer_version() -> str:
    return f"weasyprint {require('weasyprint', 'report').__version__}"


def render_pdf(html: str, manifest: dict[str, Any], *, as_of: str) -> bytes:
    reason = pdf_unavailable()
    if reason is not None:
        raise InputError(f"cannot make the PDF: {reason}")
    weasyprint = require("weasyprint", "report")
    text = json.dumps(manifest, sort_keys=True, ensure_ascii=False, indent=1)
    when = parse_ts(as_of)  # the attachment's dates too: WeasyPrint would take the clock's
    attachment = weasyprint.Attachment(string=text, name=ATTACHMENT, relationship="Data", created=when, modified=when,
                                       description="govkit evidence manifest (signed)")
    identifier = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32].encode("ascii")
    with _source_date(as_of):
        document = weasyprint.HTML(string=html, url_fetcher=_no_fetching)
        pdf: bytes = document.write_pdf(pdf_variant="pdf/a-3b", attachments=[attachment], pdf_identifier=identifier)
    return pdf


def manifest_of(pdf: bytes, *, source: object) -> dict[str, Any]:
    """The manifest attached to a govkit PDF."""
    import io

    pypdf = require("pypdf", "report")
    try:
        reader = pypdf.PdfReader(io.BytesIO(pdf))
        found = reader.attachments.get(ATTACHMENT)
    except Exception:  # noqa: BLE001 - any damage to the file means the same to the reader of it
        found = None
    if not found:
        raise InputError(f"no {ATTACHMENT} attached: not a govkit report, or damaged", file=source)
    try:
        manifest = json.loads(found[0])
    except ValueError:
        raise InputError(f"its {ATTACHMENT} is not JSON", file=source) from None
    if not isinstance(manifest, dict):
        raise InputError(f"its {ATTACHMENT} is not a JSON object", file=source)
    return manifest


def _no_fetching(url: str, *args: Any, **kwargs: Any) -> Any:
    raise ValueError(f"a report fetches nothing ({url})")


@contextlib.contextmanager
def _source_date(as_of: str) -> Iterator[None]:
    """SOURCE_DATE_EPOCH for the render: the dates WeasyPrint writes are the report's as-of time."""
    saved = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(int(parse_ts(as_of).timestamp()))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = saved
