"""Models: backbones (:mod:`avssl.models.backbones`); heads live with their pretext tasks."""

from avssl.models.backbones import build_backbone as build_backbone
