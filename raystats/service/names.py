"""Names of raystats' Ray actors; one place, so a client and a job always agree."""

from __future__ import annotations

NAMESPACE = "raystats"
REGISTRY_NAME = "raystats-registry"
_AGGREGATOR_PREFIX = "raystats-agg"


def aggregator_name(run_id: str, shard: int) -> str:
    return f"{_AGGREGATOR_PREFIX}:{run_id}:{shard}"


def parse_aggregator_name(name: str) -> tuple[str, int] | None:
    """(run_id, shard) of an aggregator actor name, or None for other actors."""
    prefix, _, rest = name.partition(":")
    run_id, _, shard = rest.rpartition(":")
    if prefix != _AGGREGATOR_PREFIX or not run_id or not shard.isdigit():
        return None
    return run_id, int(shard)
