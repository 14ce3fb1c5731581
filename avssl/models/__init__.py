"""Models: backbones (:mod:`avssl.models.backbones`); heads live with their pretext tasks."""

from avssl.models.backbones import (
    BACKBONES,
    BackboneSpec,
    CaffeNet,
    ConvNetTiny,
    build_backbone,
    export_backbone,
    feature_dim_of,
)

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "CaffeNet",
    "ConvNetTiny",
    "build_backbone",
    "export_backbone",
    "feature_dim_of",
]
