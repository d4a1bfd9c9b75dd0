"""The exceptions raystats raises.

Every error fails at the edge with one sentence that names the bad value and says
what would be accepted. All of them derive from :class:`RaystatsError`, so callers
can catch one type.
"""


class RaystatsError(Exception):
    """Base class of every error raystats raises on purpose."""


class ConfigError(RaystatsError, ValueError):
    """A flag, argument or configuration value is out of range or unknown."""


class DataError(RaystatsError):
    """A data set is missing, damaged, or not what a run was made from."""


class StoreError(RaystatsError):
    """The run store cannot be read or written as asked."""


class SchemaError(StoreError):
    """A log file does not carry a schema this version of raystats knows."""


class RunNotFoundError(StoreError, KeyError):
    """No run with the given run_id exists in the store or on the cluster."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class RunExistsError(StoreError):
    """A run_id is taken by a run with a different configuration."""


class StepNotFoundError(RaystatsError, KeyError):
    """A query asked for a logging step that was not logged."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ClusterError(RaystatsError):
    """No Ray cluster could be reached, or a service actor is missing."""
