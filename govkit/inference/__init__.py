"""Audited inference: artifact identity, the auditing proxy, client wrappers."""

from .fingerprint import ArtifactIdentity, fingerprint_artifact

__all__ = ["ArtifactIdentity", "fingerprint_artifact"]
