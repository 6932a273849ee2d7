"""The official models by name: what each is, where it comes from, where it goes, and fetching it (download,
verification, conversion). Nothing here downloads unless a caller names a model."""

from .registry import (
    GROUPS,
    MODELS,
    HubModel,
    expand_names,
    model_for_label,
    offer_label,
    offers_for,
)

__all__ = ["GROUPS", "MODELS", "HubModel", "expand_names", "model_for_label", "offer_label", "offers_for"]
