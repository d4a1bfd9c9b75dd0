"""cluster.yaml, checked offline against the Ray that is installed here.

Three layers: the JSON schema Ray ships (``ray/autoscaler/ray-schema.json``), Ray's own
``prepare_config`` + ``validate_config`` (what ``ray up`` runs before it touches a cloud),
and our own rules: GPU workers scale from zero, token authentication on every ``ray start``,
the dashboard on loopback, no node reachable from everywhere, an image of the installed
Ray. Every rule is also run on a broken copy, so none can pass by checking nothing.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.scripts.scripts import start as ray_start_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER_YAML = os.path.join(REPO, "cluster.yaml")
CLUSTER_DOC = os.path.join(REPO, "docs", "cluster.md")
SCHEMA = os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")
START_COMMANDS = ("head_start_ray_commands", "worker_start_ray_commands")
ALL_COMMANDS = (
    "initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
) + START_COMMANDS
TOKEN_FILE_LOCAL = "~/.ray/auth_token"


def load_cluster() -> dict:
    with open(CLUSTER_YAML) as f:
        return yaml.safe_load(f)


def load_schema() -> dict:
    with open(SCHEMA) as f:
        return json.load(f)


def prepared(config: dict) -> dict:
    """The config as `ray up` sees it: merged with the provider's defaults.yaml."""
    return prepare_config(copy.deepcopy(config))


# --------------------------------------------------------------------- reading commands


def shell_commands(command: str) -> list[tuple[dict[str, str], list[str]]]:
    """Split one shell line into (environment, argv) per simple command.

    The environment accumulates ``export NAME=value`` and leading ``NAME=value`` words,
    as bash would for the commands that follow in the same line.
    """
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    env: dict[str, str] = {}
    result, words = [], []
    for token in [*lexer, ";"]:
        if token and set(token) <= set(";&|"):
            if words:
                result.append(_simple_command(words, env))
            words = []
        else:
            words.append(token)
    return result


def _simple_command(words: list[str], env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    if words[0] == "export":
        env.update(word.split("=", 1) for word in words[1:] if "=" in word)
        return dict(env), words
    local = dict(env)
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        local[name] = value
    return local, words


def ray_starts(config: dict, key: str) -> list[tuple[dict[str, str], list[str]]]:
    """(environment, arguments after `ray start`) of every `ray start` under ``key``."""
    return [
        (env, argv[2:])
        for command in config.get(key, [])
        for env, argv in shell_commands(command)
        if argv[:2] == ["ray", "start"]
    ]


def start_options(argv: list[str]) -> dict:
    """Parse `ray start` arguments with the installed Ray's own command-line parser."""
    return ray_start_cli.make_context("ray start", list(argv)).params


# ------------------------------------------------------------------------------- rules


def scaling_problems(config: dict) -> list[str]:
    """GPU workers scale from zero to a positive maximum; the head holds no GPU."""
    types = config["available_node_types"]
    head = config["head_node_type"]
    problems = []
    if types[head]["resources"].get("GPU", 0):
        problems.append(f"head node type {head!r} offers GPUs; training belongs on the workers")
    gpu_workers = {name: t for name, t in types.items() if name != head and t["resources"].get("GPU", 0) > 0}
    if not gpu_workers:
        problems.append("no worker node type offers a GPU")
    for name, node_type in gpu_workers.items():
        if node_type.get("min_workers", 0) != 0:
            problems.append(f"{name}: min_workers is {node_type.get('min_workers')}, not 0")
        maximum = node_type.get("max_workers", config.get("max_workers", 0))
        if not maximum > 0:
            problems.append(f"{name}: max_workers is {maximum}; it can never start")
        if maximum > config.get("max_workers", 0):
            problems.append(f"{name}: max_workers {maximum} exceeds the cluster's {config.get('max_workers')}")
    return problems


def security_problems(config: dict) -> list[str]:
    """Token auth on every `ray start`, dashboard on loopback, nothing open to the world."""
    problems = []
    mounts = config.get("file_mounts", {})
    token_paths = {remote for remote, local in mounts.items() if local == TOKEN_FILE_LOCAL}
    if not token_paths:
        problems.append(f"no file_mount carries the token from {TOKEN_FILE_LOCAL}")
    for key in START_COMMANDS:
        starts = ray_starts(config, key)
        if not starts:
            problems.append(f"{key}: no `ray start`")
        for env, argv in starts:
            if env.get("RAY_AUTH_MODE") != "token":
                problems.append(f"{key}: `ray start {' '.join(argv)}` runs without RAY_AUTH_MODE=token")
            path = env.get("RAY_AUTH_TOKEN_PATH")
            if path is not None and path not in token_paths:
                problems.append(f"{key}: RAY_AUTH_TOKEN_PATH={path} is not where the token is mounted")
    for env, argv in ray_starts(config, "head_start_ray_commands"):
        host = start_options(argv)["dashboard_host"]
        if host != "127.0.0.1":
            problems.append(f"head `ray start` binds the dashboard and job API to {host!r}")
    for key in ALL_COMMANDS:
        for command in config.get(key, []):
            if "0.0.0.0" in command:
                problems.append(f"{key}: {command!r} binds 0.0.0.0")
    for name, node_type in config["available_node_types"].items():
        if not node_type["node_config"].get("SecurityGroupIds"):
            # A group the launcher creates gets SSH from 0.0.0.0/0 (aws/config.py).
            problems.append(f"{name}: no SecurityGroupIds; `ray up` would open SSH to 0.0.0.0/0")
    rules = config["provider"].get("security_group", {}).get("IpPermissions", [])
    if "0.0.0.0/0" in json.dumps(rules) or "::/0" in json.dumps(rules):
        problems.append("provider.security_group opens a port to every address")
    return problems


def image_problems(config: dict, ray_version: str) -> list[str]:
    """Every image is a rayproject/ray image of the Ray installed here."""
    docker = config.get("docker", {})
    images = {key: docker[key] for key in ("image", "head_image", "worker_image") if key in docker}
    if not images:
        return ["no docker image: nothing installs Ray on the nodes"]
    problems = []
    for key, image in images.items():
        match = re.fullmatch(r"rayproject/ray:(?P<version>\d+\.\d+\.\d+)-py\d+(-\w+)?", image)
        if match is None:
            problems.append(f"docker.{key} {image!r} is not a versioned rayproject/ray image")
        elif match["version"] != ray_version:
            problems.append(f"docker.{key} {image!r} runs Ray {match['version']}, not the installed {ray_version}")
    return problems


# ------------------------------------------------------------------------------ tests


def test_schema_of_installed_ray_accepts_cluster_yaml():
    schema = load_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(load_cluster(), schema)


def test_ray_up_preparation_accepts_cluster_yaml():
    """What `ray up` runs before it calls the cloud: defaults merged, then validated."""
    config = prepared(load_cluster())
    validate_config(config)
    assert config["head_node_type"] in config["available_node_types"]


BROKEN_COPIES = {
    "misspelled top-level key": lambda c: c.update(max_worker=8),
    "GPU count as a string": lambda c: c["available_node_types"]["worker_gpu"]["resources"].update(GPU="1"),
    "fractional CPU count": lambda c: c["available_node_types"]["head_cpu"]["resources"].update(CPU=0.5),
    "node type without node_config": lambda c: c["available_node_types"]["worker_gpu"].pop("node_config"),
    "unknown docker option": lambda c: c["docker"].update(imgae="rayproject/ray:2.60.0-py311-gpu"),
    "start commands as one string": lambda c: c.update(head_start_ray_commands="ray start --head"),
    "max_workers as a string": lambda c: c["available_node_types"]["worker_gpu"].update(max_workers="8"),
}


@pytest.mark.parametrize("breakage", BROKEN_COPIES)
def test_schema_rejects_a_broken_copy(breakage):
    config = load_cluster()
    BROKEN_COPIES[breakage](config)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, load_schema())
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepared(config))


def test_gpu_workers_scale_from_zero():
    config = load_cluster()
    assert scaling_problems(config) == []
    assert scaling_problems(prepared(config)) == []
    workers = config["available_node_types"]["worker_gpu"]
    assert workers["min_workers"] == 0 and workers["max_workers"] > 0


@pytest.mark.parametrize("breakage, expected", [
    (lambda c: c["available_node_types"]["worker_gpu"].update(min_workers=2), "min_workers is 2"),
    (lambda c: c["available_node_types"]["worker_gpu"].update(max_workers=0), "can never start"),
    (lambda c: c["available_node_types"]["worker_gpu"]["resources"].pop("GPU"), "no worker node type offers a GPU"),
    (lambda c: c["available_node_types"]["head_cpu"]["resources"].update(GPU=1), "offers GPUs"),
])
def test_scaling_rules_catch_a_broken_copy(breakage, expected):
    config = load_cluster()
    breakage(config)
    assert any(expected in problem for problem in scaling_problems(config)), scaling_problems(config)


def test_token_auth_on_dashboard_on_loopback_nothing_open():
    config = load_cluster()
    assert security_problems(config) == []
    # After the merge with Ray's defaults.yaml (whose start command binds 0.0.0.0).
    assert security_problems(prepared(config)) == []
    for key in START_COMMANDS:
        for env, _ in ray_starts(config, key):
            assert env["RAY_AUTH_MODE"] == "token"
            assert config["file_mounts"][env["RAY_AUTH_TOKEN_PATH"]] == TOKEN_FILE_LOCAL
    (_, head_argv), = ray_starts(config, "head_start_ray_commands")
    assert start_options(head_argv)["dashboard_host"] == "127.0.0.1"


def _drop_token(config: dict) -> None:
    config["worker_start_ray_commands"] = [
        command.replace("RAY_AUTH_MODE=token", "") for command in config["worker_start_ray_commands"]
    ]


def _open_dashboard(config: dict) -> None:
    config["head_start_ray_commands"] = [
        command.replace("--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0")
        for command in config["head_start_ray_commands"]
    ]


@pytest.mark.parametrize("breakage, expected", [
    (_drop_token, "without RAY_AUTH_MODE=token"),
    (_open_dashboard, "binds the dashboard and job API to '0.0.0.0'"),
    (_open_dashboard, "binds 0.0.0.0"),
    (lambda c: c.pop("head_start_ray_commands"), "without RAY_AUTH_MODE=token"),  # Ray's default comes back
    (lambda c: c["available_node_types"]["head_cpu"]["node_config"].pop("SecurityGroupIds"), "open SSH"),
    (lambda c: c["provider"].update(security_group={"IpPermissions": [{"IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}),
     "every address"),
    (lambda c: c["file_mounts"].pop("/home/ray/.ray/auth_token"), "no file_mount carries the token"),
])
def test_security_rules_catch_a_broken_copy(breakage, expected):
    config = load_cluster()
    breakage(config)
    problems = security_problems(prepared(config))
    assert any(expected in problem for problem in problems), problems


def test_ray_start_arguments_parse_with_installed_ray():
    config = load_cluster()
    for key in START_COMMANDS:
        for _, argv in ray_starts(config, key):
            start_options(argv)  # raises click.UsageError on an option Ray 2.60 lacks
    (_, head_argv), = ray_starts(config, "head_start_ray_commands")
    options = start_options(head_argv)
    assert options["head"] and options["include_dashboard"]
    # Without it the head's autoscaler never launches a worker.
    assert options["autoscaling_config"] == "~/ray_bootstrap_config.yaml"


def test_docker_image_runs_installed_ray():
    config = load_cluster()
    assert image_problems(config, ray.__version__) == []
    broken = copy.deepcopy(config)
    broken["docker"]["image"] = "rayproject/ray:2.9.0-py311-gpu"
    assert image_problems(broken, ray.__version__) != []
    broken["docker"]["image"] = "rayproject/ray:latest-gpu"
    assert image_problems(broken, ray.__version__) != []


def test_command_reader_follows_bash():
    line = "ulimit -n 1; export A=1 B=2; C=3 ray start --x='a;b' && ray start --y"
    assert shell_commands(line) == [
        ({}, ["ulimit", "-n", "1"]),
        ({"A": "1", "B": "2"}, ["export", "A=1", "B=2"]),
        ({"A": "1", "B": "2", "C": "3"}, ["ray", "start", "--x=a;b"]),
        ({"A": "1", "B": "2"}, ["ray", "start", "--y"]),
    ]


def test_every_placeholder_is_explained_in_the_docs():
    with open(CLUSTER_YAML) as f:
        placeholders = set(re.findall(r"REPLACE_WITH_[A-Z_]+", f.read()))
    with open(CLUSTER_DOC) as f:
        doc = f.read()
    assert placeholders, "cluster.yaml has no REPLACE_WITH_ placeholders; update this test and the docs"
    assert sorted(p for p in placeholders if p not in doc) == []
