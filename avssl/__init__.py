"""avssl: self-supervised learning from video and sound."""

__version__ = "0.1.0"
