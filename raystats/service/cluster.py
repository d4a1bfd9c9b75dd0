"""Joining a Ray cluster with token authentication left on."""

from __future__ import annotations

import os
import socket

import ray

from raystats.errors import ClusterError
from raystats.service.names import NAMESPACE

START_HINT = (
    "start one with `ray start --head --dashboard-host 127.0.0.1` (token authentication "
    "stays on; submit jobs with RAY_AUTH_MODE=token set), or leave the address out to "
    "start a local cluster"
)


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to the cluster at ``address``, or join/start one when it is None.

    With no address, ``ray.init`` joins the cluster a job was submitted to (RAY_ADDRESS)
    or starts a local one. An address that answers nothing raises :class:`ClusterError`.
    """
    if ray.is_initialized():
        _check_same_cluster(address)
        return
    _check_reachable(address)
    kwargs = {"namespace": NAMESPACE, "log_to_driver": True}
    if address is None and "RAY_ADDRESS" not in os.environ:
        # "local": start a cluster of our own. A bare ray.init() would try to join the
        # address in /tmp/ray/ray_current_cluster, which a stopped cluster leaves behind.
        address = "local"
        kwargs.update(include_dashboard=False, num_cpus=num_cpus)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = address or os.environ.get("RAY_ADDRESS")
        raise ClusterError(f"no Ray cluster answered at {where!r} ({error}); {START_HINT}") from None


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at a host:port address.

    ``ray.init`` keeps retrying a dead GCS address for minutes before it gives up.
    """
    if address is None or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"address {address!r} is not host:port; {START_HINT}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise ClusterError(f"no Ray cluster answered at {address!r} ({error}); {START_HINT}") from None


def _check_same_cluster(address: str | None) -> None:
    """Refuse an explicit host:port other than the cluster this process already joined.

    ``ray.init`` can join one cluster per process; silently running on the joined one
    when the caller named another would put the run somewhere the caller does not look.
    Compared by GCS port: the joined address may name the node's IP, not 127.0.0.1.
    """
    if address is None or address in ("auto", "local") or "://" in address:
        return
    joined = ray.get_runtime_context().gcs_address
    if address.rpartition(":")[2] != joined.rpartition(":")[2]:
        raise ClusterError(
            f"this process is already connected to the Ray cluster at {joined!r}, not {address!r}; "
            "call ray.shutdown() first, or leave the address out to use the joined cluster"
        )
