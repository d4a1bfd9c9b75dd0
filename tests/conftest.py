"""Shared fixtures: one real Ray cluster per test session, started like a user would.

The cluster is a `ray start --head` node with token authentication on (RAY_AUTH_MODE
=token, the token in ~/.ray/auth_token), the dashboard bound to 127.0.0.1 so `ray job
submit` works against it, and 2 CPUs as on the machines CI runs on.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

os.environ["RAY_AUTH_MODE"] = "token"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ensure_auth_token() -> str:
    """Path of the token `ray start` reads (~/.ray/auth_token), created once if missing.

    A fresh machine has none, and `ray start` with RAY_AUTH_MODE=token refuses to start
    without one. Created by hard-linking a fully written file: two test sessions that
    race both end up with the same token, never a half-written or replaced one.
    """
    import secrets

    path = os.path.expanduser("~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as handle:
        handle.write(secrets.token_hex(32))
    os.chmod(temporary, 0o600)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)
    return path


ensure_auth_token()
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HeadNode:
    """A `ray start --head` cluster on this machine, with its GCS and dashboard addresses."""

    def __init__(self, num_cpus: int = 2):
        self.port, self.dashboard_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        command = [
            "ray", "start", "--head", "--block", f"--port={self.port}", f"--num-cpus={num_cpus}",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
            "--include-dashboard=true", "--disable-usage-stats",
            # The job agent's HTTP port is 52365 unless told otherwise: a second cluster
            # on the machine would find it taken and answer every `ray job submit` with
            # "No available agent to submit job".
            f"--dashboard-agent-listen-port={free_port()}",
        ]
        # --block keeps `ray start` in the foreground; ending it stops this cluster's
        # processes and no other cluster on the machine (unlike `ray stop`).
        self.process = subprocess.Popen(
            command, env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self._dashboard_up, timeout=180, interval=1.0, what="the Ray head node")

    def _dashboard_up(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"`ray start --head` exited with {self.process.returncode}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.dashboard_port)) == 0

    def env(self) -> dict:
        return dict(os.environ, RAY_AUTH_MODE="token", PYTHONPATH=REPO, RAY_ADDRESS=self.address)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)


@pytest.fixture(scope="session")
def ray_head():
    """The session's Ray cluster; the test process is connected to it as a driver."""
    import ray

    head = HeadNode()
    ray.init(address=head.address, namespace="raystats", log_to_driver=False)
    yield head
    ray.shutdown()
    head.stop()


@pytest.fixture(scope="session")
def fashion_mnist_root() -> str:
    if not os.path.isdir(FASHION_MNIST):
        pytest.skip(
            f"{FASHION_MNIST} is missing: `apt-get install -y dataset-fashion-mnist` installs it "
            "(.ci/run does)"
        )
    return FASHION_MNIST


def run_job(args: list[str], env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run `python jobs/<job>.py args...` as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True,
        env=env or dict(os.environ, RAY_AUTH_MODE="token"), timeout=timeout,
    )


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
