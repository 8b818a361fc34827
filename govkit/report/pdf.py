"""The PDF of a report: its HTML printed by WeasyPrint as tagged PDF/A-3a (a structure tree for
screen readers; PDF/A-3 allows the attachment), with the signed manifest attached as
`govkit-manifest.json`. Byte-stable: SOURCE_DATE_EPOCH is the report's as-of time,
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

__all__ = ["ATTACHMENT", "SYSTEM_PACKAGES", "byte_dependencies", "manifest_of", "pdf_unavailable", "render_pdf",
           "renderer_version", "require_pdf"]

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


def byte_dependencies(html: str) -> dict[str, Any]:
    """What a PDF's bytes depend on besides its HTML and manifest: WeasyPrint and pydyf, Pango,
    the font subsetter (HarfBuzz's, or fontTools' when libharfbuzz-subset is absent: the two give
    different bytes for the same text), and each font file the document embeds, by the digest of the file (before subsetting). The
    manifest keeps them, so that `report verify` can name which one changed when a genuine PDF no
    longer rebuilds byte for byte."""
    weasyprint = require("weasyprint", "report")
    from weasyprint.pdf import fonts
    from weasyprint.text.ffi import pango
    from weasyprint.text.fonts import get_hb_object_data

    document = weasyprint.HTML(string=html, url_fetcher=_no_fetching).render()
    document.write_pdf()  # the fonts a document embeds are known once it is drawn
    packed = pango.pango_version()
    if fonts.harfbuzz_subset and fonts.harfbuzz.hb_version_atleast(4, 1, 0):
        subsetter = "HarfBuzz-Subset (libharfbuzz-subset)"
    else:
        import fontTools

        subsetter = f"fontTools {fontTools.version} (libharfbuzz-subset absent or older than 4.1)"
    embedded = sorted({f"{font.family} {font.weight}{' italic' if font.style else ''}: "
                       f"sha256:{hashlib.sha256(bytes(get_hb_object_data(font.hb_face))).hexdigest()[:16]}"
                       for font in document.fonts.values()})
    return {"weasyprint": weasyprint.__version__, "pydyf": _version("pydyf"),
            "pango": f"{packed // 10000}.{packed // 100 % 100}.{packed % 100}", "font_subsetter": subsetter,
            "fonts": embedded}


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def render_pdf(html: str, manifest: dict[str, Any], *, as_of: str) -> bytes:
    weasyprint = require("weasyprint", "report")
    text = json.dumps(manifest, sort_keys=True, ensure_ascii=False, indent=1)
    when = parse_ts(as_of)  # the attachment's dates too: WeasyPrint would take the clock's
    attachment = weasyprint.Attachment(string=text, name=ATTACHMENT, relationship="Data", created=when, modified=when,
                                       description="govkit evidence manifest (signed)")
    identifier = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32].encode("ascii")
    with _source_date(as_of):
        document = weasyprint.HTML(string=html, url_fetcher=_no_fetching)
        pdf: bytes = document.write_pdf(pdf_variant="pdf/a-3a", attachments=[attachment], pdf_identifier=identifier)
    return pdf


def require_pdf() -> None:
    """Fail with what to install when this machine cannot print a PDF."""
    reason = pdf_unavailable()
    if reason is not None:
        raise InputError(f"cannot make the PDF: {reason}")


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
