"""brainot: optimal-transport brain-image alignment and brain captioning on the Natural Scenes Dataset."""

__version__ = "0.1.0"
