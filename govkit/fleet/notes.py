"""C2SP signed notes (c2sp.org/signed-note): the text format of every statement the fleet signs.

A device's statement about its log ("segment lo..hi of store S ends at head H", "the store's head
is seq N, hash H") is a note signed by the device key; the witness's acknowledgement is the same
note with the witness's signature added, which is what a cosignature is in that format. Any tool
that reads signed notes (Go's golang.org/x/mod/sumdb/note, the transparency-dev witnesses) can
check the signatures. The notes are not tlog-checkpoints: those name a Merkle tree's root, and
govkit's log is a hash chain.

    text     := lines, each ending in a newline
    note     := text + "\\n" + signature lines
    line     := "— " + key name + " " + base64(key id (4 bytes, big-endian) || Ed25519 signature)
    key id   := sha256(key name || 0x0A || 0x01 || raw public key)[:4]
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

__all__ = ["Note", "add_signature", "key_name", "parse_note", "sign_note", "verify_note"]

_DASH = "\u2014 "


def key_name(kind: str, public_b64: str) -> str:
    """A key's name in a note: govkit/<kind>/<16 hex digits of the key's sha256> (no spaces, no '+')."""
    return f"govkit/{kind}/{hashlib.sha256(base64.b64decode(public_b64)).hexdigest()[:16]}"


def _key_id(name: str, public_b64: str) -> bytes:
    return hashlib.sha256(name.encode() + b"\n\x01" + base64.b64decode(public_b64)).digest()[:4]


@dataclass(frozen=True)
class Note:
    text: str
    signatures: tuple[tuple[str, bytes], ...]  # (key name, key id || signature)

    def render(self) -> str:
        return self.text + "\n" + "".join(f"{_DASH}{name} {base64.b64encode(blob).decode()}\n"
                                          for name, blob in self.signatures)

    def lines(self) -> list[str]:
        return self.text.rstrip("\n").split("\n")


def sign_note(text: str, private_key: Any, kind: str) -> str:
    """`text` (newline-terminated lines) signed by `private_key`, named after `kind` and the key."""
    if not text.endswith("\n") or "\n\n" in text:
        raise ValueError("a note's text is lines, each ending in a newline, with no empty line")
    return _signed(Note(text, ()), private_key, kind)


def add_signature(note: str, private_key: Any, kind: str) -> str:
    """The note with one more signature line: a witness cosigning what the device signed."""
    return _signed(parse_note(note), private_key, kind)


def _signed(parsed: Note, private_key: Any, kind: str) -> str:
    from ..audit.checkpoints import public_key_b64

    public = public_key_b64(private_key)
    name = key_name(kind, public)
    blob = _key_id(name, public) + private_key.sign(parsed.text.encode("utf-8"))
    return Note(parsed.text, (*parsed.signatures, (name, blob))).render()


def parse_note(note: str, *, source: str = "note") -> Note:
    """A signed note's text and signature lines; InputError naming `source` if it is not one."""
    text, sep, signatures = note.rpartition("\n\n")
    if not sep or not text or any(ord(c) < 0x20 and c != "\n" for c in note):
        raise InputError(f"{source}: not a signed note")
    parsed = []
    for line in signatures.split("\n"):
        if not line:
            continue
        name, _, encoded = line.removeprefix(_DASH).rpartition(" ")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except ValueError:
            blob = b""
        if not line.startswith(_DASH) or not name or len(blob) < 5:
            raise InputError(f"{source}: malformed signature line {line[:40]!r}")
        parsed.append((name, blob))
    if not parsed:
        raise InputError(f"{source}: the note carries no signature")
    return Note(text + "\n", tuple(parsed))


def verify_note(note: str | Note, public_b64: str, kind: str) -> bool:
    """Whether the note carries a valid signature by this key (named for `kind`). Signatures of
    other keys are ignored, as the format asks; a known key's bad signature is False."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    parsed = note if isinstance(note, Note) else parse_note(note)
    name = key_name(kind, public_b64)
    wanted = _key_id(name, public_b64)
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64))
    found = False
    for signer, blob in parsed.signatures:
        if signer != name or blob[:4] != wanted:
            continue
        try:
            key.verify(blob[4:], parsed.text.encode("utf-8"))
        except InvalidSignature:
            return False
        found = True
    return found
