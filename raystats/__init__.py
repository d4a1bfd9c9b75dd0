"""raystats: how hard each training example is for deep networks, measured on Ray."""

__version__ = "0.1.0"
