"""Data lineage: dataset and model fingerprints, their links, and the OpenLineage export."""

from .registry import DATASET_ROLES, RELATIONS, Lineage, LineageChange, LineageGraph
from .tables import FORMATS, ReadOptions

__all__ = ["DATASET_ROLES", "FORMATS", "RELATIONS", "Lineage", "LineageChange", "LineageGraph", "ReadOptions"]
