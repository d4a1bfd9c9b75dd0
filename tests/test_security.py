"""Security: the cluster stays closed to strangers, the store cannot run code, and a run's
own metadata cannot point the client at another storage.

- Token authentication: the test cluster (conftest.ray_head) refuses a driver with a wrong
  token and HTTP requests to its job API without one; nothing in the project turns it off.
- Every `ray start` in README.md, docs/ and cluster.yaml runs with RAY_AUTH_MODE=token and
  keeps the dashboard (and the job API it serves) on 127.0.0.1.
- No code of raystats unpickles: no pickle/cloudpickle/dill/joblib loads, torch.load only
  with weights_only=True, np.load never with allow_pickle (checked on the syntax tree).
- A run.json carrying a "storage" field is ignored by raystats.open and by the report.
"""

from __future__ import annotations

import ast
import glob
import hashlib
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import yaml

import raystats
from tests.conftest import REPO
from tests.fakeruns import write_fake_run

PYTHON_DIRS = ("raystats", "jobs")


# ---- token authentication -------------------------------------------------------------------------

_CONNECT = "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); print('CONNECTED')"


@pytest.mark.ray
def test_cluster_refuses_a_driver_and_a_job_request_without_the_token(ray_head):
    strangers = {
        "wrong token": dict(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32)),
        "no token": dict(RAY_AUTH_MODE="disabled"),
    }
    clients = {}
    for name, auth in strangers.items():
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        clients[name] = subprocess.Popen(
            [sys.executable, "-c", _CONNECT, ray_head.address], env=dict(env, **auth),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
    # The job API (what `ray job submit` talks to) answers 401 without the token, 200 with it.
    url = f"{ray_head.dashboard}/api/jobs/"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=60)
    assert refused.value.code in (401, 403)
    with open(os.path.expanduser("~/.ray/auth_token")) as handle:
        token = handle.read().strip()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    assert urllib.request.urlopen(request, timeout=60).status == 200
    for name, client in clients.items():
        output, _ = client.communicate(timeout=300)
        assert client.returncode != 0 and "CONNECTED" not in output, (name, output[-2000:])
        assert "Authentication token is missing or incorrect" in output, (name, output[-2000:])


def _python_sources(*folders: str) -> dict[str, str]:
    sources = {}
    for folder in folders:
        for path in glob.glob(os.path.join(REPO, folder, "**", "*.py"), recursive=True):
            with open(path) as handle:
                sources[os.path.relpath(path, REPO)] = handle.read()
    return sources


def test_nothing_turns_token_authentication_off():
    """No code, test, doc or cluster file sets RAY_AUTH_MODE to anything but token."""
    files = _python_sources("raystats", "jobs", "tests", "benchmarks")
    for pattern in ("README.md", "docs/*.md", "cluster.yaml", ".ci/*"):
        for path in glob.glob(os.path.join(REPO, pattern)):
            with open(path) as handle:
                files[os.path.relpath(path, REPO)] = handle.read()
    assignments = re.compile(r"""RAY_AUTH_MODE['"]?\s*(?:=|\]\s*=|:|,)\s*['"]?([A-Za-z_]+)""")
    seen = 0
    for path, text in files.items():
        for value in assignments.findall(text):
            seen += 1
            # "disabled" appears once, on purpose: the stranger in the refusal test above.
            if path == "tests/test_security.py" and value == "disabled":
                continue
            assert value == "token", f"{path} sets RAY_AUTH_MODE={value}"
        assert "--disable-" + "auth" not in text, path
    assert seen >= 5  # conftest, the README and cluster.yaml at least: the scan reads them


# ---- `ray start` lines in the docs ---------------------------------------------------------------

def ray_start_commands() -> list[tuple[str, str, str]]:
    """(file, command, shell context before it) for every `ray start` in README, docs, cluster.yaml."""
    found = []
    for path in [os.path.join(REPO, "README.md"), *glob.glob(os.path.join(REPO, "docs", "*.md"))]:
        with open(path) as handle:
            text = handle.read()
        for block in _code_blocks(text):
            found += _commands_in(os.path.relpath(path, REPO), block.replace("\\\n", " "))
    with open(os.path.join(REPO, "cluster.yaml")) as handle:
        config = yaml.safe_load(handle)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for command in config.get(key, []):
            found += _commands_in(f"cluster.yaml:{key}", command.replace("\n", " "))
    return found


def _code_blocks(markdown: str) -> list[str]:
    """The fenced code blocks of a markdown text."""
    blocks, current = [], None
    for line in markdown.splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def _commands_in(where: str, script: str) -> list[tuple[str, str, str]]:
    commands = []
    context = ""
    for line in script.splitlines():
        for part in re.split(r"\s*(?:;|&&)\s*", line):
            if re.search(r"(^|\s)ray start(\s|$)", part):
                commands.append((where, part.strip(), context))
            context += " " + part
    return commands


def test_every_ray_start_keeps_token_auth_and_a_loopback_dashboard():
    commands = ray_start_commands()
    assert any(where == "README.md" for where, _, _ in commands)
    assert any(where.startswith("cluster.yaml:head") for where, _, _ in commands)
    for where, command, context in commands:
        words = shlex.split(command)
        environment = " ".join(words[: words.index("ray")]) + " " + context
        assert re.search(r"RAY_AUTH_MODE=token\b", environment), f"{where}: {command!r} runs without token auth"
        hosts = re.findall(r"--dashboard-host[= ](\S+)", command)
        assert all(host == "127.0.0.1" for host in hosts), f"{where}: {command!r}"
        if "--head" in words:
            assert hosts == ["127.0.0.1"], f"{where}: {command!r} must bind the dashboard to 127.0.0.1"


# ---- nothing unpickles ------------------------------------------------------------------------------

_PICKLERS = {"pickle", "cloudpickle", "dill", "joblib", "_pickle", "marshal", "shelve"}


def unpickling_calls(source: str, where: str) -> tuple[list[str], dict[str, int]]:
    """Problems in ``source`` and a count of the checked calls (torch.load, np.load)."""
    problems, checked = [], {"torch.load": 0, "np.load": 0}
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in _PICKLERS:
            names = [alias.name for alias in node.names]
            if any(name in ("load", "loads", "Unpickler", "open", "*") for name in names):
                problems.append(f"{where}:{node.lineno} imports {names} from {node.module}")
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
        name, line = node.func.attr, f"{where}:{node.lineno}"
        keywords = {k.arg: k.value for k in node.keywords}
        if owner in _PICKLERS and name in ("load", "loads", "Unpickler", "open"):
            problems.append(f"{line} calls {owner}.{name}")
        elif name == "read_pickle":
            problems.append(f"{line} calls {owner}.read_pickle")
        elif owner == "torch" and name == "load":
            checked["torch.load"] += 1
            flag = keywords.get("weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                problems.append(f"{line} calls torch.load without weights_only=True")
        elif owner in ("np", "numpy") and name == "load":
            checked["np.load"] += 1
            flag = keywords.get("allow_pickle")
            if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                problems.append(f"{line} calls np.load with allow_pickle")
    return problems, checked


def test_scanner_finds_what_it_looks_for():
    planted = (
        "import pickle, torch, numpy as np\nfrom cloudpickle import loads\n"
        "pickle.loads(b'')\ntorch.load(f)\ntorch.load(f, weights_only=False)\n"
        "np.load(f, allow_pickle=True)\npd.read_pickle(f)\ntorch.load(f, weights_only=True)\nnp.load(f)\n"
    )
    problems, checked = unpickling_calls(planted, "planted.py")
    assert len(problems) == 6, problems
    assert checked == {"torch.load": 3, "np.load": 2}


def test_nothing_in_raystats_unpickles_a_file():
    problems, checked = [], {"torch.load": 0, "np.load": 0}
    for path, source in _python_sources(*PYTHON_DIRS).items():
        found, counts = unpickling_calls(source, path)
        problems += found
        for name, count in counts.items():
            checked[name] += count
    assert not problems, problems
    assert checked["torch.load"] >= 2 and checked["np.load"] >= 1, checked  # the checkpoint loaders were seen


# ---- storage never comes from a run's metadata ----------------------------------------------------

def _digest(root: str) -> dict[str, str]:
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                found[os.path.relpath(os.path.join(folder, name), root)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def test_storage_field_in_run_json_is_ignored(tmp_path):
    """run.json says its logs live elsewhere: the client and the report read and write its own store."""
    from raystats.report import write_report

    real, decoy = str(tmp_path / "real"), str(tmp_path / "decoy")
    write_fake_run(real, "digits-cnn", trials=2, epochs=2, seed=0)
    write_fake_run(decoy, "digits-cnn", trials=2, epochs=2, seed=5)  # other rows, same run_id
    expected = raystats.open(real).easiness("digits-cnn")
    assert not expected.equals(raystats.open(decoy).easiness("digits-cnn"))
    path = os.path.join(real, "digits-cnn", "run.json")
    with open(path) as handle:
        info = json.load(handle)
    with open(path, "w") as handle:
        json.dump(dict(info, storage=decoy), handle)
    decoy_before = _digest(decoy)
    client = raystats.open(real)
    assert client.info("digits-cnn")["storage"] == decoy  # the field is there, and ignored:
    assert client.easiness("digits-cnn").equals(expected)
    page = write_report(client, "digits-cnn")
    assert page == os.path.join(real, "digits-cnn", "report", "index.html") and os.path.exists(page)
    assert _digest(decoy) == decoy_before
