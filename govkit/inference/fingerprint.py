"""Model artifact identity: the file's sha256 and what its own metadata says it is.

The sha256 is streamed (flat memory) and cached by (path, size, mtime), in memory and in a small
JSON file beside the audit log, so a multi-GB GGUF is hashed once, not at every start. GGUF
metadata comes from the `gguf` package: architecture, parameter count (summed over the tensors),
quantization (general.file_type), context length, chat-template hash, license.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._lazy import require
from ..digests import sha256_digest, sha256_file
from ..errors import InputError

__all__ = ["ArtifactIdentity", "fingerprint_artifact", "sha256_file"]

METADATA_VERSION = 2  # bump when the metadata read from files changes; older cache entries are re-read
_lock = threading.Lock()
_memory: dict[tuple[str, int, int], ArtifactIdentity] = {}


@dataclass(frozen=True)
class ArtifactIdentity:
    path: str
    sha256: str  # "sha256:<hex>"
    bytes: int
    mtime_ns: int
    format: str  # gguf | onnx | safetensors | unknown
    name: str | None = None
    architecture: str | None = None
    parameter_count: int | None = None
    quantization: str | None = None
    context_length: int | None = None
    chat_template_sha256: str | None = None
    license: str | None = None
    details: dict[str, Any] | None = None  # format-specific: GGUF base models/type, ONNX producer, ...
    metadata_version: int = METADATA_VERSION

    def record_fields(self) -> dict[str, Any]:
        """The audit-record fields this identity fills in."""
        return {k: v for k, v in {
            "artifact_sha256": self.sha256, "architecture": self.architecture,
            "parameter_count": self.parameter_count, "quantization": self.quantization,
            "chat_template_sha256": self.chat_template_sha256}.items() if v is not None}

    def same_file(self) -> bool:
        """Cheap check (one stat) that the file is still the one fingerprinted."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return False
        return (stat.st_size, stat.st_mtime_ns) == (self.bytes, self.mtime_ns)


def fingerprint_artifact(path: str | Path, *, cache_file: Path | None = None) -> ArtifactIdentity:
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the model artifact ({exc.strerror})") from None
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key in _memory:
            return _memory[key]
    identity = _from_cache_file(cache_file, key)
    if identity is None:
        identity = _fingerprint(path, key)
        _to_cache_file(cache_file, identity)
    with _lock:
        _memory[key] = identity
    return identity


def _fingerprint(path: Path, key: tuple[str, int, int]) -> ArtifactIdentity:
    digest = sha256_file(path)[0]
    with path.open("rb") as handle:
        magic = handle.read(8)
    base: dict[str, Any] = dict(path=key[0], sha256=digest, bytes=key[1], mtime_ns=key[2])
    if magic[:4] == b"GGUF":
        return ArtifactIdentity(**base, format="gguf", **_gguf_metadata(path))
    if path.suffix.lower() == ".onnx":
        return ArtifactIdentity(**base, format="onnx", **_onnx_metadata(path))
    if path.suffix.lower() == ".safetensors":
        return ArtifactIdentity(**base, format="safetensors", **_safetensors_metadata(path))
    return ArtifactIdentity(**base, format="unknown")


def _gguf_metadata(path: Path) -> dict[str, Any]:
    gguf = require("gguf", "inference")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # the gguf package raises plain ValueErrors and friends on junk
        raise InputError(f"{path}: not a readable GGUF file ({exc})") from None

    def field(name: str) -> Any:
        item = reader.fields.get(name)
        return item.contents() if item is not None else None

    architecture = field("general.architecture")
    template = field("tokenizer.chat_template")
    file_type = field("general.file_type")
    try:
        quantization = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_") if file_type is not None else None
    except ValueError:
        quantization = f"file_type {file_type}"
    return {
        "name": field("general.name"),
        "architecture": architecture,
        "parameter_count": sum(int(t.n_elements) for t in reader.tensors),
        "quantization": quantization,
        "context_length": field(f"{architecture}.context_length") if architecture else None,
        "chat_template_sha256": sha256_digest(template) if template else None,
        "license": field("general.license"),
        "details": _gguf_details(field),
    }


def _gguf_details(field: Any) -> dict[str, Any]:
    """Provenance the file declares: its type (model or LoRA adapter) and the models it derives from."""
    details: dict[str, Any] = {"type": field("general.type") or "model"}
    for key in ("size_label", "organization", "finetune", "basename", "version", "quantized_by"):
        value = field(f"general.{key}")
        if value is not None:
            details[key] = value
    if details["type"] == "adapter":
        details["adapter_type"] = field("adapter.type")
    bases = []
    for index in range(int(field("general.base_model.count") or 0)):
        base = {key: field(f"general.base_model.{index}.{key}") for key in ("name", "organization", "version", "repo_url")}
        bases.append({k: v for k, v in base.items() if v is not None})
    if bases:
        details["base_models"] = bases
    return details


def _onnx_metadata(path: Path) -> dict[str, Any]:
    onnx = require("onnx", "onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends on junk
        raise InputError(f"{path}: not a readable ONNX file ({exc})") from None
    count = 0
    for tensor in model.graph.initializer:
        n = 1
        for dim in tensor.dims:
            n *= dim
        count += n
    props = {p.key: p.value for p in model.metadata_props}
    return {
        "name": model.graph.name or None,
        "parameter_count": count or None,
        "license": props.get("license"),
        "details": {"ir_version": model.ir_version, "producer": model.producer_name,
                    "producer_version": model.producer_version, "model_version": model.model_version,
                    "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
                    "metadata": props},
    }


def _safetensors_metadata(path: Path) -> dict[str, Any]:
    """The header is 8 bytes of little-endian length, then JSON: read it without the tensors."""
    with path.open("rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        if not 1 < size < 100_000_000:
            raise InputError(f"{path}: not a safetensors file (header length {size})")
        try:
            header = json.loads(handle.read(size))
        except ValueError as exc:
            raise InputError(f"{path}: not a safetensors file (header is not JSON: {exc})") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: not a safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    count, dtypes = 0, dict[str, int]()
    for info in header.values():
        if isinstance(info, dict):
            n = 1
            for dim in info.get("shape", []):
                n *= dim
            count += n
            dtype = str(info.get("dtype"))
            dtypes[dtype] = dtypes.get(dtype, 0) + n
    return {"parameter_count": count or None, "license": metadata.get("license"),
            "details": {"tensors": len(header), "dtypes": dict(sorted(dtypes.items(), key=str)),
                        "metadata": metadata}}


def _from_cache_file(cache_file: Path | None, key: tuple[str, int, int]) -> ArtifactIdentity | None:
    if cache_file is None:
        return None
    try:
        entries = json.loads(cache_file.read_text())
        entry = entries.get(key[0])
        if (entry and (entry["bytes"], entry["mtime_ns"]) == key[1:]
                and entry.get("metadata_version") == METADATA_VERSION):
            return ArtifactIdentity(**entry)
    except (OSError, ValueError, TypeError, KeyError):
        pass
    return None


def _to_cache_file(cache_file: Path | None, identity: ArtifactIdentity) -> None:
    if cache_file is None:
        return
    try:
        entries = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    except (OSError, ValueError):
        entries = {}
    entries[identity.path] = asdict(identity)
    tmp = cache_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
    os.replace(tmp, cache_file)


def artifact_fields(artifact: Path | None, *, cache_file: Path | None = None) -> dict[str, Any]:
    """The record fields that tie evidence to a model file (its sha256 and metadata); none without one."""
    return {} if artifact is None else fingerprint_artifact(artifact, cache_file=cache_file).record_fields()
