"""The report: figures from plain data, and the page written from a real (fabricated) run store."""

from __future__ import annotations

import os
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.image  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from fakeruns import fake_store, write_fake_run  # noqa: E402, F401 - fake_store is a fixture
from matplotlib.figure import Figure  # noqa: E402

import raystats.client  # noqa: E402
from raystats.errors import ConfigError, DataError, RunNotFoundError  # noqa: E402
from raystats.report import (  # noqa: E402
    Section,
    display_image,
    easiness_histogram,
    example_grid,
    load_run_dataset,
    matching_figure,
    mean_image_grid,
    per_class_extremes,
    per_class_sets,
    render_page,
    write_report,
)

EXPECTED_PNGS = {"easiest.png", "hardest.png", "averaged.png", "histogram.png", "matching.png", "data_map.png"}


@pytest.fixture(scope="module")
def report(fake_store) -> str:
    client = raystats.client.open(fake_store)
    return write_report(client, "digits-cnn", compare_with="digits-mlp3")


def linked_images(index: str) -> list[str]:
    with open(index, encoding="utf-8") as handle:
        return re.findall(r'<img src="([^"]+)"', handle.read())


# ---- the written report -----------------------------------------------------------------

def test_report_is_written_into_the_run_folder(report, fake_store):
    assert report == os.path.join(fake_store, "digits-cnn", "report", "index.html")
    assert os.path.isfile(report)


def test_every_linked_png_exists_and_is_an_image(report):
    links = linked_images(report)
    assert set(links) == EXPECTED_PNGS
    for name in links:
        image = matplotlib.image.imread(os.path.join(os.path.dirname(report), name))
        assert image.ndim == 3 and image.shape[2] in (3, 4)
        assert image.shape[0] > 200 and image.shape[1] > 200
        assert image.std() > 0  # not a blank canvas


def test_page_names_the_run_and_its_facts(report):
    with open(report, encoding="utf-8") as handle:
        page = handle.read()
    assert "<title>raystats report: digits-cnn</title>" in page
    assert "<th>trials (M)</th><td>3</td>" in page
    assert "digits-mlp3" in page
    assert "23, 46, 69" in page  # the logged steps of a 3-epoch run of 23 steps per epoch


def test_matching_rate_in_facts_equals_the_client(report, fake_store):
    client = raystats.client.open(fake_store)
    rate = client.matching_rate("digits-cnn", "digits-mlp3", "easy", 0.1)
    with open(report, encoding="utf-8") as handle:
        page = handle.read()
    assert f"easy-set matching rate at step 69, digits-mlp3</th><td>{rate:.3f} (chance 0.100)" in page


def test_report_without_comparison_and_with_out_dir(fake_store, tmp_path):
    client = raystats.client.open(fake_store)
    index = write_report(client, "digits-mlp3", out_dir=str(tmp_path / "out"), frac=0.2)
    assert index == str(tmp_path / "out" / "index.html")
    assert set(linked_images(index)) == EXPECTED_PNGS
    assert all((tmp_path / "out" / name).is_file() for name in EXPECTED_PNGS)


def test_single_trial_run_has_no_self_agreement_but_a_report(tmp_path):
    storage = str(tmp_path / "runs")
    write_fake_run(storage, "one", trials=1, epochs=2)
    index = write_report(raystats.client.open(storage), "one")
    assert set(linked_images(index)) == EXPECTED_PNGS
    with open(index, encoding="utf-8") as handle:
        assert "self-agreement" not in handle.read()


def test_unknown_runs_fail_before_anything_is_written(fake_store, tmp_path):
    client = raystats.client.open(fake_store)
    with pytest.raises(RunNotFoundError, match="nope"):
        write_report(client, "nope", out_dir=str(tmp_path / "a"))
    with pytest.raises(RunNotFoundError, match="nope"):
        write_report(client, "digits-cnn", out_dir=str(tmp_path / "b"), compare_with="nope")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_bad_frac_is_refused(fake_store, tmp_path):
    with pytest.raises(ConfigError, match="frac=1.5"):
        write_report(raystats.client.open(fake_store), "digits-cnn", out_dir=str(tmp_path), frac=1.5)


def test_uri_storage_needs_out_dir(fake_store):
    client = raystats.client.open(f"file://{fake_store}")
    with pytest.raises(ConfigError, match="out_dir"):
        write_report(client, "digits-cnn")


def test_data_set_with_another_fingerprint_is_refused(fake_store):
    info = raystats.client.open(fake_store).info("digits-cnn")
    assert load_run_dataset(info).fingerprint == info["dataset"]["fingerprint"]
    info["dataset"]["fingerprint"] = "0" * 64
    with pytest.raises(DataError, match="fingerprint"):
        load_run_dataset(info)


# ---- choosing examples, by hand -----------------------------------------------------------

def test_per_class_extremes_by_hand():
    ids = np.array([10, 11, 12, 13, 14, 15])
    labels = np.array([0, 0, 0, 1, 1, 1])
    loss = np.array([0.5, 0.1, 0.1, 2.0, 0.3, 1.0])
    easiest, hardest = per_class_extremes(ids, labels, loss, k=2)
    np.testing.assert_array_equal(easiest[0][0], [11, 12])  # tie 0.1: lower id first
    np.testing.assert_array_equal(hardest[0][0], [10, 11])
    np.testing.assert_array_equal(easiest[1][0], [14, 15])
    np.testing.assert_array_equal(hardest[1][0], [13, 15])
    np.testing.assert_allclose(hardest[1][1], [2.0, 1.0])


def test_per_class_sets_have_equal_sizes_and_come_from_the_class():
    rng = np.random.default_rng(3)
    ids = np.arange(100)
    labels = np.repeat([0, 1], 50)
    loss = rng.random(100)
    sets = per_class_sets(ids, labels, loss, frac=0.1)
    for label, chosen in sets.items():
        assert {len(chosen[kind]) for kind in ("easy", "random", "hard")} == {5}
        assert all(np.all(labels[chosen[kind]] == label) for kind in chosen)
        class_ids = ids[labels == label]
        np.testing.assert_array_equal(chosen["easy"], np.sort(class_ids[np.argsort(loss[class_ids])[:5]]))
        np.testing.assert_array_equal(chosen["hard"], np.sort(class_ids[np.argsort(loss[class_ids])[-5:]]))
    again = per_class_sets(ids, labels, loss, frac=0.1)
    np.testing.assert_array_equal(sets[0]["random"], again[0]["random"])  # seeded


# ---- figures from plain data ---------------------------------------------------------------

def test_display_image_gray_and_rgb():
    gray, kwargs = display_image(np.zeros((1, 4, 5), np.uint8))
    assert gray.shape == (4, 5) and kwargs["cmap"] == "gray"
    rgb, kwargs = display_image(np.full((3, 4, 5), 255.0))
    assert rgb.shape == (4, 5, 3) and kwargs == {} and rgb.max() == 1.0
    with pytest.raises(ValueError, match="shape"):
        display_image(np.zeros((4, 5)))


def test_figures_from_plain_rgb_data():
    images = np.random.default_rng(0).integers(0, 256, (6, 3, 8, 8), dtype=np.uint8)
    grid = example_grid(images, [np.array([0, 1, 2]), np.array([], int)], [np.array([0.1, 0.2, 0.3]), np.array([])],
                        ["cat", "dog"], "title", "loss")
    means = [[images[:3].mean(axis=0), None]]
    averaged = mean_image_grid(means, ["easy"], ["cat", "dog"], [[3, 0]], "title")
    histogram = easiness_histogram(np.array([0.1, 0.5, 2.0]), np.array([1.0, 0.5, 0.0]), (0.1, 2.0), (1.0, 0.0),
                                   0.3, "title")
    curve = pd.DataFrame({"step": [1, 2], "matching_rate": [0.2, 0.5]})
    matching = matching_figure({"easy sets": {"a": curve}, "hard sets": {"a": curve}}, 0.1, "title")
    for fig in (grid, averaged, histogram, matching):
        assert isinstance(fig, Figure)
        fig.canvas.draw()  # renders without error
    assert len(matching.axes) == 2 and matching.axes[0].get_ylabel().startswith("matching rate")


def test_render_page_escapes_text():
    page = render_page("a <b>", [("x & y", "<1>")], [Section("h", "f.png", "c")])
    assert "<title>a &lt;b&gt;</title>" in page
    assert "<th>x &amp; y</th><td>&lt;1&gt;</td>" in page
    assert '<img src="f.png" alt="h">' in page
