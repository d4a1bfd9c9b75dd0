"""Data sets: shapes and ids, the IDX parser, fingerprints, and the errors for missing or damaged sources."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest
from PIL import Image

from raystats.data import DATASETS, Dataset, Split, load_dataset
from raystats.data import datasets as datasets_module
from raystats.data.datasets import read_idx
from raystats.errors import ConfigError, DataError

IDX_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file by hand: 0x0000, type 0x08 (uint8), ndim, big-endian sizes, values."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def fake_arrays(seed=0, n_train=6, n_test=4, height=5, width=4):
    rng = np.random.default_rng(seed)
    return {
        ("train", "images"): rng.integers(0, 256, (n_train, height, width), dtype=np.uint8),
        ("train", "labels"): rng.integers(0, 10, n_train, dtype=np.uint8),
        ("test", "images"): rng.integers(0, 256, (n_test, height, width), dtype=np.uint8),
        ("test", "labels"): rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_idx_set(folder, arrays, gz=True):
    os.makedirs(folder, exist_ok=True)
    for key, array in arrays.items():
        content = idx_bytes(array)
        path = os.path.join(folder, IDX_NAMES[key] + (".gz" if gz else ""))
        with open(path, "wb") as handle:
            handle.write(gzip.compress(content) if gz else content)
    return folder


@pytest.fixture
def offline(monkeypatch):
    """No network, whatever the machine: the download is never tried."""
    monkeypatch.setattr(datasets_module, "_network_reachable", lambda *a, **k: False)


# ----------------------------------------------------------------------------- digits


def test_digits_shapes_labels_and_split():
    data = load_dataset("digits")
    assert isinstance(data, Dataset) and data.name == "digits"
    assert (len(data.train), len(data.test)) == (1437, 360)
    assert data.train.images.shape == (1437, 1, 8, 8) and data.test.images.shape == (360, 1, 8, 8)
    assert data.train.images.dtype == np.uint8 and data.train.labels.dtype == np.int64
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert data.classes == tuple("0123456789")
    for split in (data.train, data.test):
        assert set(np.unique(split.labels)) == set(range(10))
    assert data.train.images.max() == 255 and data.train.images.min() == 0


def test_digits_rows_keep_sklearn_order_and_scaling():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    data = load_dataset("digits")
    images = np.concatenate([data.train.images, data.test.images])[:, 0]
    labels = np.concatenate([data.train.labels, data.test.labels])
    np.testing.assert_array_equal(labels, bunch.target)
    # 0..16 → round(v·255/16): 16 → 255, 8 → 128 (127.5 rounds to even), 1 → 16
    np.testing.assert_array_equal(images, np.rint(bunch.images * 255 / 16).astype(np.uint8))
    assert images[bunch.images == 16].min() == 255 and set(images[bunch.images == 1]) == {16}


def test_digits_fingerprint_is_stable_and_arrays_are_read_only():
    first = load_dataset("digits")
    datasets_module._load_cached.cache_clear()
    second = load_dataset("digits")
    assert first is not second
    assert first.fingerprint == second.fingerprint and len(first.fingerprint) == 64
    with pytest.raises(ValueError):
        first.train.labels[0] = 3
    assert load_dataset("digits") is second  # cached in-process


def test_unknown_name_lists_the_accepted_ones():
    with pytest.raises(ConfigError) as error:
        load_dataset("imagenet-22k")
    assert "imagenet-22k" in str(error.value)
    for name in DATASETS:
        assert name in str(error.value)


def test_split_refuses_wrong_types():
    with pytest.raises(DataError, match="uint8"):
        Split(np.zeros((2, 1, 3, 3), np.float32), np.zeros(2, np.int64))
    with pytest.raises(DataError, match="int64"):
        Split(np.zeros((2, 1, 3, 3), np.uint8), np.zeros(3, np.int64))


def test_repr_does_not_print_arrays():
    text = repr(load_dataset("digits"))
    assert "digits" in text and "1437" in text and len(text) < 200


# ------------------------------------------------------------------ IDX parser, fake files


@pytest.mark.parametrize("gz", [True, False])
def test_fake_idx_set_loads_exactly(tmp_path, gz, offline):
    arrays = fake_arrays()
    write_idx_set(tmp_path, arrays, gz=gz)
    data = load_dataset("mnist", tmp_path)
    assert data.input_shape == (1, 5, 4) and data.classes == tuple("0123456789")
    np.testing.assert_array_equal(data.train.images[:, 0], arrays["train", "images"])
    np.testing.assert_array_equal(data.test.images[:, 0], arrays["test", "images"])
    np.testing.assert_array_equal(data.train.labels, arrays["train", "labels"])
    np.testing.assert_array_equal(data.test.labels, arrays["test", "labels"])
    assert data.train.labels.dtype == np.int64


def test_fake_fashion_mnist_in_torchvision_layout(tmp_path, offline):
    arrays = fake_arrays()
    write_idx_set(tmp_path / "FashionMNIST" / "raw", arrays)
    data = load_dataset("fashion-mnist", str(tmp_path))
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    np.testing.assert_array_equal(data.train.labels, arrays["train", "labels"])


def test_fingerprint_follows_content_not_compression(tmp_path, offline):
    arrays = fake_arrays()
    plain = load_dataset("mnist", write_idx_set(tmp_path / "plain", arrays, gz=False))
    zipped = load_dataset("mnist", write_idx_set(tmp_path / "zipped", arrays, gz=True))
    assert plain.fingerprint == zipped.fingerprint
    again = load_dataset("mnist", write_idx_set(tmp_path / "again", fake_arrays()))
    assert again.fingerprint == plain.fingerprint
    arrays["test", "labels"] = arrays["test", "labels"].copy()
    arrays["test", "labels"][0] = (arrays["test", "labels"][0] + 1) % 10
    changed = load_dataset("mnist", write_idx_set(tmp_path / "changed", arrays))
    assert changed.fingerprint != plain.fingerprint


def test_a_file_changed_in_place_is_read_again(tmp_path, offline):
    arrays = fake_arrays()
    write_idx_set(tmp_path, arrays, gz=False)
    before = load_dataset("mnist", tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    content = bytearray(labels.read_bytes())
    content[-1] = (content[-1] + 1) % 10  # same size
    labels.write_bytes(bytes(content))
    stat = labels.stat()
    os.utime(labels, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = load_dataset("mnist", tmp_path)
    assert after.fingerprint != before.fingerprint
    assert after.test.labels[-1] == content[-1]


def test_read_idx_parses_other_types_and_shapes(tmp_path):
    values = np.arange(6, dtype=">i4").reshape(2, 3)
    path = tmp_path / "ints"
    path.write_bytes(bytes([0, 0, 0x0C, 2]) + struct.pack(">2I", 2, 3) + values.tobytes())
    array, content = read_idx(str(path))
    np.testing.assert_array_equal(array, [[0, 1, 2], [3, 4, 5]])
    assert content == path.read_bytes()


def test_truncated_idx_file_names_file_and_size(tmp_path, offline):
    write_idx_set(tmp_path, fake_arrays(), gz=False)
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-7])
    with pytest.raises(DataError) as error:
        load_dataset("mnist", tmp_path)
    message = str(error.value)
    assert str(images) in message and "truncated" in message
    assert str(16 + 6 * 5 * 4) in message  # the size its header promises


def test_truncated_gzip_names_file(tmp_path, offline):
    write_idx_set(tmp_path, fake_arrays(), gz=True)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:20])
    with pytest.raises(DataError, match="gzip") as error:
        load_dataset("mnist", tmp_path)
    assert str(labels) in str(error.value)


@pytest.mark.parametrize("garbage", [b"", b"\x00", b"hello, this is not IDX", bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5])])
def test_garbage_is_not_idx(tmp_path, garbage, offline):
    write_idx_set(tmp_path, fake_arrays(), gz=False)
    labels = tmp_path / "train-labels-idx1-ubyte"
    labels.write_bytes(garbage)
    with pytest.raises(DataError) as error:
        load_dataset("mnist", tmp_path)
    assert str(labels) in str(error.value) and "IDX" in str(error.value)


def test_header_shorter_than_its_dims(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(bytes([0, 0, 0x08, 3, 0, 0]))
    with pytest.raises(DataError, match="header") as error:
        read_idx(str(path))
    assert str(path) in str(error.value)


def test_wrong_shape_labels_and_mismatched_counts(tmp_path, offline):
    arrays = fake_arrays()
    arrays["train", "labels"] = arrays["train", "labels"].reshape(2, 3)
    write_idx_set(tmp_path / "a", arrays)
    with pytest.raises(DataError, match="1-d uint8") as error:
        load_dataset("mnist", tmp_path / "a")
    assert "train-labels-idx1-ubyte.gz" in str(error.value)

    arrays = fake_arrays()
    arrays["test", "labels"] = arrays["test", "labels"][:3]
    write_idx_set(tmp_path / "b", arrays)
    with pytest.raises(DataError, match="4 test images but 3 labels"):
        load_dataset("mnist", tmp_path / "b")

    arrays = fake_arrays()
    arrays["test", "labels"][1] = 12
    write_idx_set(tmp_path / "c", arrays)
    with pytest.raises(DataError, match="label 12") as error:
        load_dataset("mnist", tmp_path / "c")
    assert "t10k-labels-idx1-ubyte.gz" in str(error.value)


# ------------------------------------------------------------------ missing sources


def test_missing_fashion_mnist_says_where_and_how(tmp_path, offline):
    folder = tmp_path / "nowhere"
    with pytest.raises(DataError) as error:
        load_dataset("fashion-mnist", folder)
    message = str(error.value)
    assert str(folder) in message and os.path.join(str(folder), "FashionMNIST", "raw") in message
    assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert "apt-get install -y dataset-fashion-mnist" in message
    assert "download=True" in message and "cannot be reached" in message


def test_missing_mnist_without_root_names_the_cache(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(DataError) as error:
        load_dataset("mnist")
    assert os.path.join(str(tmp_path), "raystats", "datasets") in str(error.value)
    assert "MNIST(root, download=True)" in str(error.value)


def test_half_present_set_names_missing_files_and_downloads_nothing(tmp_path, monkeypatch):
    arrays = fake_arrays()
    del arrays["test", "labels"]
    write_idx_set(tmp_path, arrays)

    def no_download(*args):
        raise AssertionError("a half-present set must not trigger a download")

    monkeypatch.setattr(datasets_module, "_download_idx", no_download)
    with pytest.raises(DataError, match=f"{tmp_path} lacks t10k-labels-idx1-ubyte"):
        load_dataset("mnist", tmp_path)


class FakeTorchvisionMNIST:
    """Stands in for torchvision.datasets.MNIST: 'downloads' by writing fake IDX files."""

    mirrors = ["https://example.invalid/mnist/"]
    fail = False

    def __init__(self, root, train=True, download=False):
        assert download
        if self.fail:
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")
        write_idx_set(os.path.join(root, "MNIST", "raw"), fake_arrays(seed=3))


FakeTorchvisionMNIST.__name__ = "MNIST"


def test_download_where_a_network_exists(tmp_path, monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeTorchvisionMNIST)
    monkeypatch.setattr(datasets_module, "_network_reachable", lambda *a, **k: True)
    data = load_dataset("mnist", tmp_path)
    np.testing.assert_array_equal(data.train.labels, fake_arrays(seed=3)["train", "labels"])


def test_failed_download_is_one_data_error(tmp_path, monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(FakeTorchvisionMNIST, "fail", True)
    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeTorchvisionMNIST)
    monkeypatch.setattr(datasets_module, "_network_reachable", lambda *a, **k: True)
    with pytest.raises(DataError, match="download into .* failed: Error downloading") as error:
        load_dataset("mnist", tmp_path)
    assert str(tmp_path) in str(error.value)


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_missing_cifar_names_the_folder(tmp_path, name, folder):
    with pytest.raises(DataError) as error:
        load_dataset(name, tmp_path)
    assert os.path.join(str(tmp_path), folder) in str(error.value)
    assert "download=True" in str(error.value)


def test_damaged_cifar_folder_is_a_data_error(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        (folder / name).write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="damaged") as error:
        load_dataset("cifar10", tmp_path)
    assert str(folder) in str(error.value)


# ------------------------------------------------------------------------ imagefolder


def write_png(path, size, color):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, color).save(path)


def tiny_imagefolder(root):
    """train: cat ×2, dog ×3; val: cat ×1, dog ×1. Sizes vary and are not square."""
    write_png(root / "train" / "dog" / "b.png", (12, 8), (0, 0, 255))
    write_png(root / "train" / "cat" / "a.png", (10, 10), (255, 0, 0))
    write_png(root / "train" / "cat" / "b.png", (8, 16), (0, 255, 0))
    write_png(root / "train" / "dog" / "a.png", (6, 6), (10, 20, 30))
    write_png(root / "train" / "dog" / "c.png", (20, 9), (200, 100, 50))
    write_png(root / "val" / "cat" / "x.png", (7, 7), (1, 2, 3))
    write_png(root / "val" / "dog" / "y.png", (9, 5), (4, 5, 6))
    (root / "train" / "cat" / "notes.txt").write_text("not an image, ignored")
    return root


def test_imagefolder_loads_classes_in_canonical_order(tmp_path):
    data = load_dataset("imagefolder", tiny_imagefolder(tmp_path), image_size=6)
    assert data.classes == ("cat", "dog")
    assert data.train.images.shape == (5, 3, 6, 6) and data.test.images.shape == (2, 3, 6, 6)
    np.testing.assert_array_equal(data.train.labels, [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(data.test.labels, [0, 1])
    # rows follow (class, file name): cat/a red, cat/b green, dog/a, dog/b blue, dog/c
    colors = data.train.images[:, :, 3, 3]
    np.testing.assert_array_equal(colors, [[255, 0, 0], [0, 255, 0], [10, 20, 30], [0, 0, 255], [200, 100, 50]])
    np.testing.assert_array_equal(data.test.images[:, :, 0, 0], [[1, 2, 3], [4, 5, 6]])


def test_imagefolder_fingerprint_follows_files_and_size(tmp_path):
    root = tiny_imagefolder(tmp_path)
    first = load_dataset("imagefolder", root, image_size=6)
    assert load_dataset("imagefolder", root, image_size=6).fingerprint == first.fingerprint
    assert load_dataset("imagefolder", root, image_size=4).fingerprint != first.fingerprint
    write_png(root / "val" / "dog" / "y.png", (9, 5), (4, 5, 7))
    path = root / "val" / "dog" / "y.png"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    changed = load_dataset("imagefolder", root, image_size=6)
    assert changed.fingerprint != first.fingerprint
    assert changed.test.images[1, 2, 0, 0] == 7


def test_imagefolder_errors_name_the_path(tmp_path):
    with pytest.raises(ConfigError, match="needs a root"):
        load_dataset("imagefolder")
    with pytest.raises(ConfigError, match="image_size"):
        load_dataset("imagefolder", tmp_path, image_size=0)
    missing = tmp_path / "missing"
    with pytest.raises(DataError) as error:
        load_dataset("imagefolder", missing)
    assert str(missing / "train") in str(error.value) and "val/<class>" in str(error.value)

    root = tiny_imagefolder(tmp_path / "no-val")
    for path in (root / "val").rglob("*.png"):
        path.unlink()
    with pytest.raises(DataError, match="holds no images") as error:
        load_dataset("imagefolder", root)
    assert str(root / "val" / "cat") in str(error.value)

    root = tiny_imagefolder(tmp_path / "extra-class")
    write_png(root / "val" / "bird" / "z.png", (5, 5), (0, 0, 0))
    with pytest.raises(DataError, match="bird"):
        load_dataset("imagefolder", root)

    root = tiny_imagefolder(tmp_path / "broken")
    broken = root / "train" / "dog" / "d.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="cannot be decoded") as error:
        load_dataset("imagefolder", root)
    assert str(broken) in str(error.value)


def test_imagefolder_without_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        load_dataset("imagefolder", tmp_path)


# ------------------------------------------------------------------ real Fashion-MNIST


@pytest.mark.fashion_mnist
def test_real_fashion_mnist(fashion_mnist_root):
    data = load_dataset("fashion-mnist", fashion_mnist_root)
    assert (len(data.train), len(data.test)) == (60000, 10000)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert data.train.images.dtype == np.uint8 and data.train.labels.dtype == np.int64
    # Fashion-MNIST is balanced: 6,000 train and 1,000 test images per class
    np.testing.assert_array_equal(np.bincount(data.train.labels), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(data.test.labels), [1000] * 10)
    assert data.train.labels[:5].tolist() == [9, 0, 0, 3, 0]  # the source's canonical order
    assert load_dataset("fashion-mnist").fingerprint == data.fingerprint
