"""raystats: how hard each training example is for deep networks, measured on Ray.

>>> import raystats
>>> c = raystats.open("./raystats-runs")     # the store alone, no cluster
>>> c = raystats.connect()                    # a running cluster (address="auto")
"""

from raystats.client import Client, connect, open  # noqa: A004 - the design's public name
from raystats.config import RunConfig
from raystats.errors import RaystatsError

__version__ = "0.1.0"
__all__ = ["Client", "RaystatsError", "RunConfig", "connect", "open", "__version__"]
