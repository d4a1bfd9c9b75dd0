"""The `raystats` command and jobs/report.py against a real (fabricated) run store."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from fakeruns import fake_store  # noqa: F401 - a fixture

import raystats.client
from raystats.cli import main
from raystats.data import load_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def printed_ids(out: str) -> np.ndarray:
    return np.array([int(line) for line in out.split()], dtype=np.int64)


def test_runs_lists_both_runs(capsys, fake_store):
    code, out, _ = run_cli(capsys, "--storage", fake_store, "runs")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["run_id", "dataset", "arch", "trials", "status", "steps_logged", "last_step"]
    assert lines[2].split() == ["digits-cnn", "digits", "cnn", "3", "finished", "3", "69"]
    assert lines[3].split()[0] == "digits-mlp3"


def test_runs_of_an_empty_store(capsys, tmp_path):
    code, out, err = run_cli(capsys, "--storage", str(tmp_path), "runs")
    assert code == 0 and out == "" and "no runs" in err


@pytest.mark.parametrize(
    "argv, which, kwargs",
    [
        ([], "easy", {}),
        (["--frac", "0.05", "--kind", "count"], "easy", {"frac": 0.05, "kind": "count"}),
        (["--step", "23"], "hard", {"step": 23}),
        (["--frac", "0.2", "--kind", "count", "--step", "46"], "hard", {"frac": 0.2, "kind": "count", "step": 46}),
    ],
)
def test_easy_and_hard_print_the_client_ids(capsys, fake_store, argv, which, kwargs):
    client = raystats.client.open(fake_store)
    expected = getattr(client, which)("digits-cnn", **kwargs)
    code, out, err = run_cli(capsys, "--storage", fake_store, which, "digits-cnn", *argv)
    assert code == 0 and err == ""
    np.testing.assert_array_equal(printed_ids(out), expected)
    assert len(expected) > 0


def test_storage_may_follow_the_command(capsys, fake_store):
    code, out, _ = run_cli(capsys, "easy", "digits-cnn", "--storage", fake_store)
    assert code == 0
    np.testing.assert_array_equal(printed_ids(out), raystats.client.open(fake_store).easy("digits-cnn"))


def test_hard_table_has_labels_and_easiness_hardest_first(capsys, fake_store):
    client = raystats.client.open(fake_store)
    expected = client.hard("digits-cnn", frac=0.02)
    easiness = client.easiness("digits-cnn").set_index("example_id")["easiness"]
    labels = load_dataset("digits").train.labels
    code, out, _ = run_cli(capsys, "--storage", fake_store, "hard", "digits-cnn", "--frac", "0.02", "--table")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["example_id", "label", "easiness", "n_trials"]
    rows = [line.split() for line in lines[2:]]
    ids = [int(row[0]) for row in rows]
    assert sorted(ids) == expected.tolist()
    for row in rows:
        assert int(row[1]) == labels[int(row[0])]
        assert float(row[2]) == pytest.approx(easiness[int(row[0])], rel=1e-3)
        assert row[3] == "3"
    values = [float(row[2]) for row in rows]
    assert values == sorted(values, reverse=True)


def test_easiness_shows_the_top_rows_easiest_first(capsys, fake_store):
    frame = raystats.client.open(fake_store).easiness("digits-cnn", step=46)
    expected = frame.sort_values(["easiness", "example_id"]).head(7)["example_id"].tolist()
    code, out, err = run_cli(capsys, "--storage", fake_store, "easiness", "digits-cnn", "--step", "46", "--top", "7")
    assert code == 0 and "step 46" in err
    assert [int(line.split()[0]) for line in out.splitlines()[2:]] == expected


def test_match_prints_rate_and_chance(capsys, fake_store):
    rate = raystats.client.open(fake_store).matching_rate("digits-cnn", "digits-mlp3", "hard", 0.1, 23, 69)
    code, out, _ = run_cli(capsys, "--storage", fake_store, "match", "digits-cnn", "digits-mlp3",
                           "--which", "hard", "--step", "23", "--step-b", "69")
    assert code == 0
    assert out.splitlines() == [f"matching rate: {rate:.4f}", "chance level:  0.1000"]


def test_curve_prints_every_common_step(capsys, fake_store):
    curve = raystats.client.open(fake_store).matching_curve("digits-cnn", "digits-mlp3")
    code, out, _ = run_cli(capsys, "--storage", fake_store, "curve", "digits-cnn", "digits-mlp3")
    assert code == 0
    rows = [line.split() for line in out.splitlines()[2:]]
    assert [int(row[0]) for row in rows] == [23, 46, 69]
    np.testing.assert_allclose([float(row[1]) for row in rows], curve["matching_rate"], atol=1e-4)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["easy", "nope"], "no run 'nope'"),
        (["match", "digits-cnn", "nope"], "no run 'nope'"),
        (["easiness", "digits-cnn", "--step", "5"], "step 5 is not logged"),
        (["hard", "digits-cnn", "--frac", "1.5"], "frac=1.5"),
        (["easy", "digits-cnn", "--split", "test"], "split='test' is not logged"),
        (["report", "nope"], "no run 'nope'"),
    ],
)
def test_errors_are_one_line_and_exit_2(capsys, fake_store, argv, words):
    code, out, err = run_cli(capsys, "--storage", fake_store, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert words in err


def test_storage_and_address_together_are_refused(capsys, fake_store):
    code, _, err = run_cli(capsys, "--storage", fake_store, "--address", "auto", "runs")
    assert code == 2 and "--storage and --address" in err


def test_report_command_writes_the_page(capsys, fake_store, tmp_path):
    code, out, _ = run_cli(capsys, "--storage", fake_store, "report", "digits-mlp3", "--out", str(tmp_path),
                           "--compare-with", "digits-cnn")
    assert code == 0 and out.strip() == str(tmp_path / "index.html")
    assert (tmp_path / "index.html").is_file() and (tmp_path / "matching.png").is_file()


def run_script(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_report_job_prints_index_path(fake_store, tmp_path):
    result = run_script("jobs/report.py", "--storage", fake_store, "--run-id", "digits-cnn",
                        "--out", str(tmp_path), "--frac", "0.2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "index.html")
    assert (tmp_path / "data_map.png").is_file()


def test_report_job_unknown_run_exits_2(fake_store):
    result = run_script("jobs/report.py", "--storage", fake_store, "--run-id", "nope")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: no run 'nope'") and result.stderr.count("\n") == 1


def test_module_entry_point(fake_store):
    result = run_script("-m", "raystats.cli", "--storage", fake_store, "hard", "digits-cnn")
    assert result.returncode == 0, result.stderr
    expected = raystats.client.open(fake_store).hard("digits-cnn")
    np.testing.assert_array_equal(printed_ids(result.stdout), expected)
