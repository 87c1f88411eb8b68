"""e2wm: teach language models embodied knowledge from a VirtualHome world model."""

__version__ = "0.1.0"
