"""Data sets with stable example ids: images as uint8 arrays, labels, a fingerprint.

``load_dataset(name, root)`` returns a :class:`Dataset` whose ``train`` and ``test``
splits hold uint8 images (N, C, H, W) and int64 labels (N,). An example's
``example_id`` is its row index in its split, in the source's canonical order, so the
same source always gives the same ids (architecture.md, "Datasets").

Sources, and where each one is read from:

==============  ================================================================
``digits``      scikit-learn's bundled 8×8 digits; no files, no download.
``fashion-mnist``  raw IDX files (gzipped or not) in ``root``, by default
                the Debian package's folder /usr/share/datasets/fashion-mnist.
``mnist``       raw IDX files in ``root`` or ``<root>/MNIST/raw`` (torchvision's layout).
``cifar10``     ``<root>/cifar-10-batches-py`` (torchvision's layout).
``cifar100``    ``<root>/cifar-100-python`` (torchvision's layout).
``imagefolder``  ``<root>/train/<class>/*`` and ``<root>/val/<class>/*``.
==============  ================================================================

Loaded arrays are read-only: a loaded data set is cached in-process and shared by every
caller, so a caller that needs to change labels (label corruption) copies them first.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import socket
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import numpy as np

from raystats.errors import ConfigError, DataError

DATASETS = ("digits", "fashion-mnist", "mnist", "cifar10", "cifar100", "imagefolder")

FASHION_MNIST_FOLDER = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DIGIT_CLASSES = tuple(str(d) for d in range(10))

# sklearn's load_digits orders the 1,797 images by writer, so a prefix split keeps
# each writer's digits on one side: 1,437 (80 %) for training, the last 360 for test.
DIGITS_N_TRAIN = 1437
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# Each IDX data set is four files; their roles, in the order they are hashed.
_IDX_ROLES = (
    ("train", "images", "train-images-idx3-ubyte"),
    ("train", "labels", "train-labels-idx1-ubyte"),
    ("test", "images", "t10k-images-idx3-ubyte"),
    ("test", "labels", "t10k-labels-idx1-ubyte"),
)
# IDX type byte → numpy dtype; multi-byte values are big-endian.
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# ---------------------------------------------------------------------------- types


@dataclass(frozen=True, eq=False)
class Split:
    """The images and labels of one split; an example's id is its row index.

    Parameters
    ----------
    images : numpy.ndarray
        uint8, shape (N, C, H, W).
    labels : numpy.ndarray
        int64, shape (N,).
    """

    images: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise DataError(
                f"split images must be uint8 (N, C, H, W), got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.dtype != np.int64 or self.labels.shape != self.images.shape[:1]:
            raise DataError(
                f"split labels must be int64 ({len(self.images)},), "
                f"got {self.labels.dtype} {self.labels.shape}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"Split(n={len(self)}, image_shape={tuple(self.images.shape[1:])})"


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set: its train and test splits, class names, and source fingerprint.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`.
    train, test : Split
        The splits; both have images of the same (C, H, W).
    classes : tuple of str
        Class names; label ``k`` is ``classes[k]``.
    fingerprint : str
        sha256 hex over the source bytes; it changes when the source does, so a run
        can check that every node reads the data set it was made from.
    """

    name: str
    train: Split
    test: Split
    classes: tuple[str, ...]
    fingerprint: str

    def __post_init__(self) -> None:
        if self.train.images.shape[1:] != self.test.images.shape[1:]:
            raise DataError(
                f"{self.name}: train images are {self.train.images.shape[1:]}, "
                f"test images {self.test.images.shape[1:]}; both splits must have one shape"
            )
        for split_name, split in (("train", self.train), ("test", self.test)):
            if len(split) and (split.labels.min() < 0 or split.labels.max() >= len(self.classes)):
                raise DataError(
                    f"{self.name}: {split_name} labels span [{split.labels.min()}, {split.labels.max()}], "
                    f"expected [0, {len(self.classes)}) for {len(self.classes)} classes"
                )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        channels, height, width = self.train.images.shape[1:]
        return int(channels), int(height), int(width)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={len(self.train)}, test={len(self.test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"fingerprint={self.fingerprint[:12]!r}...)"
        )


# ----------------------------------------------------------------------- public entry


def load_dataset(name: str, root: str | os.PathLike | None = None, *, image_size: int = 64) -> Dataset:
    """Load a data set by name.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`.
    root : str or path-like, optional
        Where the source lies (see the module docstring). ``None`` means the default
        place: nothing for ``digits``, /usr/share/datasets/fashion-mnist for
        ``fashion-mnist``, and raystats' download cache (``$XDG_CACHE_HOME/raystats/
        datasets``, by default ``~/.cache/raystats/datasets``) for the others.
        ``imagefolder`` needs an explicit root.
    image_size : int, default 64
        ``imagefolder`` only: every image is resized so its shorter side is
        ``image_size`` pixels, then center-cropped to a square. Sized for
        mini-ImageNet; full ImageNet-1k (1.28 M images) does not fit in memory as one
        array and needs a streaming loader, which is not in scope here.

    Returns
    -------
    Dataset
        With read-only arrays, shared with every other caller in this process.

    Raises
    ------
    ConfigError
        ``name`` is unknown, ``image_size`` is not a positive int, or ``imagefolder``
        is asked for without a root.
    DataError
        The source is missing, truncated or damaged; the message names the file or
        folder and what was expected there.

    Notes
    -----
    ``fashion-mnist`` and ``mnist`` missing from their folder are downloaded with
    torchvision into ``root`` (or the download cache) when the download host answers;
    without a network the error says how to install them.

    Loaded data sets are cached in-process (``functools.lru_cache``), keyed by the
    name, the source files and their sizes and modification times, so a changed
    source is read again.

    Examples
    --------
    >>> data = load_dataset("digits")
    >>> len(data.train), len(data.test), data.input_shape, data.num_classes
    (1437, 360, (1, 8, 8), 10)
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; accepted: {', '.join(DATASETS)}")
    if name == "imagefolder":
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ConfigError(f"image_size must be a positive int, got {image_size!r}")
    else:
        image_size = 0  # unused; keeps one cache entry per source
    locate, _ = _SOURCES[name]
    source_root, files = locate(_resolve_root(root))
    return _load_cached(name, source_root, files, _stamp(files), image_size)


@functools.lru_cache(maxsize=4)
def _load_cached(
    name: str, root: str, files: tuple[str, ...], stamp: tuple, image_size: int
) -> Dataset:
    del stamp  # part of the cache key only: a changed file is read again
    _, read = _SOURCES[name]
    return read(root, files, image_size)


def _resolve_root(root: str | os.PathLike | None) -> str | None:
    return None if root is None else os.path.abspath(os.path.expanduser(os.fspath(root)))


def _stamp(files: tuple[str, ...]) -> tuple:
    stats = (os.stat(path) for path in files)
    return tuple((s.st_size, s.st_mtime_ns, s.st_ino) for s in stats)


def download_cache() -> str:
    """Folder that downloaded data sets go to when no root is given."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "raystats", "datasets")


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _split(images: np.ndarray, labels: np.ndarray) -> Split:
    return Split(_read_only(np.ascontiguousarray(images)), _read_only(np.asarray(labels, np.int64)))


# ----------------------------------------------------------------------------- digits


def _locate_digits(root: str | None) -> tuple[str, tuple[str, ...]]:
    return "", ()


def _read_digits(root: str, files: tuple[str, ...], image_size: int) -> Dataset:
    """sklearn's digits; pixel values 0..16 become uint8 round(v · 255 / 16)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.ascontiguousarray(bunch.images, dtype="<f8")
    targets = np.ascontiguousarray(bunch.target, dtype="<i8")
    images = np.rint(pixels * (255 / 16)).astype(np.uint8)[:, None, :, :]
    digest = hashlib.sha256(b"digits\0")
    digest.update(pixels.tobytes())
    digest.update(targets.tobytes())
    n = DIGITS_N_TRAIN
    return Dataset(
        "digits", _split(images[:n], targets[:n]), _split(images[n:], targets[n:]),
        DIGIT_CLASSES, digest.hexdigest(),
    )


# --------------------------------------------------------------------- IDX (MNIST-like)


def read_idx(path: str) -> tuple[np.ndarray, bytes]:
    """Parse one IDX file (gzipped or not) into an array.

    IDX layout: a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then ``ndim``
    big-endian uint32 sizes, then the values in C order.

    Parameters
    ----------
    path : str
        The file.

    Returns
    -------
    array : numpy.ndarray
        Read-only, of the file's shape and type.
    content : bytes
        The decompressed file content, for the fingerprint.

    Raises
    ------
    DataError
        The file is not IDX, or is truncated or longer than its header says; the
        message names the file and the size expected.
    """
    with open(path, "rb") as handle:
        content = handle.read()
    if content[:2] == b"\x1f\x8b":
        try:
            content = gzip.decompress(content)
        except (EOFError, OSError, zlib.error) as error:
            raise DataError(f"{path}: the gzip stream is truncated or damaged ({error})") from error
    if len(content) < 4 or content[:2] != b"\0\0" or content[2] not in _IDX_DTYPES:
        raise DataError(
            f"{path} is not an IDX file: it starts with {content[:4].hex() or 'nothing'}, "
            "expected the magic number 0000TTDD with type TT one of 08, 09, 0b, 0c, 0d, 0e"
        )
    dtype, ndim = np.dtype(_IDX_DTYPES[content[2]]), content[3]
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(
            f"{path}: {len(content)} bytes, too short for the {header}-byte header of a {ndim}-d IDX array"
        )
    shape = tuple(int(d) for d in np.frombuffer(content, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(content) != expected:
        raise DataError(
            f"{path}: {len(content)} bytes, expected {expected} for an IDX array of shape "
            f"{shape} and type {dtype}; the file is truncated or damaged"
        )
    return np.frombuffer(content, dtype, offset=header).reshape(shape), content


def _idx_candidates(name: str, root: str | None) -> list[str]:
    """Folders searched, in order: each root itself, then torchvision's <root>/<Class>/raw."""
    if root is not None:
        roots = [root]
    elif name == "fashion-mnist":
        roots = [FASHION_MNIST_FOLDER, download_cache()]
    else:
        roots = [download_cache()]
    subfolder = _torchvision_idx_class(name).__name__
    return [folder for r in roots for folder in (r, os.path.join(r, subfolder, "raw"))]


def _find_idx_files(folder: str) -> tuple[tuple[str, ...], list[str]]:
    """The four files in ``folder`` (uncompressed preferred) and the base names missing."""
    found, missing = [], []
    for _, _, base in _IDX_ROLES:
        paths = [os.path.join(folder, base + suffix) for suffix in ("", ".gz")]
        path = next((p for p in paths if os.path.isfile(p)), None)
        (found if path else missing).append(path or base)
    return tuple(found), missing


def _torchvision_idx_class(name: str):
    from torchvision.datasets import MNIST, FashionMNIST

    return FashionMNIST if name == "fashion-mnist" else MNIST


def _network_reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether ``host`` answers a TCP connection; false at once where no network exists."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _download_idx(name: str, root: str) -> str:
    """Download with torchvision into ``root``; returns why it did not happen, or ''."""
    dataset_class = _torchvision_idx_class(name)
    url = urlparse(dataset_class.mirrors[0])
    if not _network_reachable(url.hostname, url.port or (443 if url.scheme == "https" else 80)):
        return f"no download was tried: {url.hostname} cannot be reached"
    try:
        dataset_class(root, train=True, download=True)
    except Exception as error:  # any failure of a third-party download becomes one DataError
        return f"the download into {root} failed: {error}"
    return ""


def _missing_idx_message(name: str, folders: list[str], partial: dict[str, list[str]], why: str) -> str:
    expected = ", ".join(base for _, _, base in _IDX_ROLES)
    torchvision_class = _torchvision_idx_class(name).__name__
    message = (
        f"{name}: no complete set of IDX files in {' or '.join(folders)}; "
        f"expected {expected} (each may end in .gz)"
    )
    for folder, missing in partial.items():
        message += f"; {folder} lacks {', '.join(missing)}"
    if name == "fashion-mnist":
        message += f". `apt-get install -y dataset-fashion-mnist` installs them in {FASHION_MNIST_FOLDER}, or"
    else:
        message += ". Put them in that folder, or"
    message += (
        f" where a network exists torchvision.datasets.{torchvision_class}(root, download=True) downloads them"
    )
    return message + (f" ({why})" if why else "")


def _search_idx(folders: list[str]) -> tuple[tuple[str, tuple[str, ...]] | None, dict[str, list[str]]]:
    """The first folder holding all four files, and the folders holding only some."""
    partial = {}
    for folder in folders:
        files, missing = _find_idx_files(folder)
        if not missing:
            return (folder, files), partial
        if len(missing) < len(_IDX_ROLES):
            partial[folder] = missing
    return None, partial


def _locate_idx(name: str) -> Callable[[str | None], tuple[str, tuple[str, ...]]]:
    def locate(root: str | None) -> tuple[str, tuple[str, ...]]:
        folders = _idx_candidates(name, root)
        found, partial = _search_idx(folders)
        why = ""
        if found is None and not partial:  # a half-present set is the user's to fix, not ours to overwrite
            why = _download_idx(name, root or download_cache())
            if not why:
                found, partial = _search_idx(folders)
                why = "torchvision downloaded them, but not into these folders"
        if found is None:
            raise DataError(_missing_idx_message(name, folders, partial, why))
        return found

    return locate


def _read_idx_dataset(name: str, classes: tuple[str, ...]):
    def read(root: str, files: tuple[str, ...], image_size: int) -> Dataset:
        digest = hashlib.sha256(name.encode() + b"\0")
        arrays = {}
        for (split, kind, base), path in zip(_IDX_ROLES, files):
            array, content = read_idx(path)
            digest.update(base.encode() + b"\0")
            digest.update(hashlib.sha256(content).digest())
            _check_idx_array(path, kind, array, len(classes))
            arrays[split, kind] = array
        for split in ("train", "test"):
            if len(arrays[split, "images"]) != len(arrays[split, "labels"]):
                raise DataError(
                    f"{name} in {root}: {len(arrays[split, 'images'])} {split} images but "
                    f"{len(arrays[split, 'labels'])} labels; the two files must match"
                )
        train, test = (_split(arrays[s, "images"][:, None], arrays[s, "labels"]) for s in ("train", "test"))
        return Dataset(name, train, test, classes, digest.hexdigest())

    return read


def _check_idx_array(path: str, kind: str, array: np.ndarray, num_classes: int) -> None:
    want_ndim = 3 if kind == "images" else 1
    if array.dtype != np.uint8 or array.ndim != want_ndim:
        raise DataError(
            f"{path}: a {array.ndim}-d {array.dtype} array, expected {kind} as a "
            f"{want_ndim}-d uint8 array (IDX type 08)"
        )
    if kind == "labels" and len(array) and array.max() >= num_classes:
        raise DataError(f"{path}: label {array.max()} found, expected labels in [0, {num_classes})")


# ------------------------------------------------------------------------------ CIFAR

_CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _locate_cifar(name: str) -> Callable[[str | None], tuple[str, tuple[str, ...]]]:
    def locate(root: str | None) -> tuple[str, tuple[str, ...]]:
        root = root or download_cache()
        folder = os.path.join(root, _CIFAR_FOLDERS[name])
        if not os.path.isdir(folder):
            torchvision_class = "CIFAR10" if name == "cifar10" else "CIFAR100"
            raise DataError(
                f"{name}: expected torchvision's folder {folder}, which does not exist; where a "
                f"network exists torchvision.datasets.{torchvision_class}({root!r}, download=True) "
                "downloads it, or copy the unpacked python version of the data set there"
            )
        return root, tuple(sorted(str(p) for p in Path(folder).rglob("*") if p.is_file()))

    return locate


def _read_cifar(name: str):
    def read(root: str, files: tuple[str, ...], image_size: int) -> Dataset:
        from torchvision.datasets import CIFAR10, CIFAR100

        dataset_class = CIFAR10 if name == "cifar10" else CIFAR100
        splits = {}
        for split in ("train", "test"):
            try:
                source = dataset_class(root, train=split == "train", download=False)
            except Exception as error:  # torchvision's integrity check raises RuntimeError
                raise DataError(
                    f"{name}: {os.path.join(root, _CIFAR_FOLDERS[name])} is incomplete or "
                    f"damaged ({error}); unpack the python version of the data set there again"
                ) from error
            # torchvision holds (N, H, W, C); raystats keeps channels first.
            splits[split] = _split(source.data.transpose(0, 3, 1, 2), source.targets)
        fingerprint = _hash_files(name, root, files)
        return Dataset(name, splits["train"], splits["test"], tuple(source.classes), fingerprint)

    return read


def _hash_files(name: str, root: str, files: tuple[str, ...]) -> str:
    """sha256 over (relative path, sha256 of the bytes) of ``files``, in the given order."""
    digest = hashlib.sha256(name.encode() + b"\0")
    for path in files:
        digest.update(os.path.relpath(path, root).replace(os.sep, "/").encode() + b"\0")
        digest.update(_file_sha256(path))
    return digest.hexdigest()


def _file_sha256(path: str) -> bytes:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").digest()


# ------------------------------------------------------------------------ imagefolder


def _class_files(folder: Path) -> list[str]:
    files = (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return sorted((str(p) for p in files), key=lambda p: Path(p).relative_to(folder).parts)


def _locate_imagefolder(root: str | None) -> tuple[str, tuple[str, ...]]:
    """Image files of <root>/train/<class>/ then <root>/val/<class>/, class by class."""
    if root is None:
        raise ConfigError(
            "dataset 'imagefolder' needs a root: a folder holding train/<class>/ and val/<class>/"
        )
    layout = f"expected {root}/train/<class>/*.jpg|png and {root}/val/<class>/*.jpg|png"
    for split in ("train", "val"):
        if not os.path.isdir(os.path.join(root, split)):
            raise DataError(f"imagefolder: {os.path.join(root, split)} does not exist; {layout}")
    classes = _imagefolder_classes(root, "train")
    if not classes:
        raise DataError(f"imagefolder: {os.path.join(root, 'train')} holds no class folders; {layout}")
    unknown = sorted(set(_imagefolder_classes(root, "val")) - set(classes))
    if unknown:
        raise DataError(
            f"imagefolder: {os.path.join(root, 'val')} has classes {unknown} that train/ lacks; "
            "val/ may only use the classes of train/"
        )
    files = []
    for split in ("train", "val"):
        for name in _imagefolder_classes(root, split):
            found = _class_files(Path(root, split, name))
            if not found:
                raise DataError(
                    f"imagefolder: {os.path.join(root, split, name)} holds no images "
                    f"(expected files ending in {', '.join(IMAGE_SUFFIXES)})"
                )
            files.extend(found)
    return root, tuple(files)


def _imagefolder_classes(root: str, split: str) -> list[str]:
    return sorted(
        e.name for e in os.scandir(os.path.join(root, split)) if e.is_dir() and not e.name.startswith(".")
    )


def _read_imagefolder(root: str, files: tuple[str, ...], image_size: int) -> Dataset:
    classes = tuple(_imagefolder_classes(root, "train"))
    index = {name: k for k, name in enumerate(classes)}
    parts = [Path(path).relative_to(root).parts for path in files]
    decode = functools.partial(_decode_square, size=image_size)
    # PIL releases the GIL while it decodes, so threads use every core.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        decoded = list(pool.map(decode, files))
    digest = hashlib.sha256(f"imagefolder\0{image_size}\0".encode())
    for part, (_, file_digest) in zip(parts, decoded):
        digest.update("/".join(part).encode() + b"\0")
        digest.update(file_digest)
    splits = {}
    for split in ("train", "val"):
        rows = [k for k, part in enumerate(parts) if part[0] == split]
        empty = np.zeros((0, 3, image_size, image_size), np.uint8)
        images = np.stack([decoded[k][0] for k in rows]) if rows else empty
        splits[split] = _split(images, [index[parts[k][1]] for k in rows])
    return Dataset("imagefolder", splits["train"], splits["val"], classes, digest.hexdigest())


def _decode_square(path: str, size: int) -> tuple[np.ndarray, bytes]:
    """One image as uint8 (3, size, size): shorter side resized to ``size``, center crop."""
    from PIL import Image, UnidentifiedImageError

    with open(path, "rb") as handle:
        content = handle.read()
    try:
        with Image.open(io.BytesIO(content)) as image:
            image = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"imagefolder: {path} cannot be decoded as an image ({error})") from error
    width, height = image.size
    scale = size / min(width, height)
    new_width, new_height = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_width, new_height), Image.Resampling.BILINEAR)
    left, top = (new_width - size) // 2, (new_height - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1), hashlib.sha256(content).digest()


# --------------------------------------------------------------------------- registry

# name → (locate(root) -> (root, files), read(root, files, image_size) -> Dataset)
_SOURCES = {
    "digits": (_locate_digits, _read_digits),
    "fashion-mnist": (
        _locate_idx("fashion-mnist"), _read_idx_dataset("fashion-mnist", FASHION_MNIST_CLASSES)
    ),
    "mnist": (_locate_idx("mnist"), _read_idx_dataset("mnist", DIGIT_CLASSES)),
    "cifar10": (_locate_cifar("cifar10"), _read_cifar("cifar10")),
    "cifar100": (_locate_cifar("cifar100"), _read_cifar("cifar100")),
    "imagefolder": (_locate_imagefolder, _read_imagefolder),
}


def load_run_dataset(info: dict, data_root: str | None = None):
    """The data set a run was made from, checked against the fingerprint in its run.json.

    Parameters
    ----------
    info : dict
        The run's run.json (``client.info(run_id)``).
    data_root : str, optional
        Folder of the data set's files; default: the run's own ``data_root``.

    Raises
    ------
    DataError
        If the data set cannot be found, or its files differ from the run's.
    """
    expected = info["dataset"]
    root = data_root if data_root is not None else info["config"].get("data_root")
    dataset = load_dataset(expected["name"], root)
    if dataset.fingerprint != expected.get("fingerprint"):
        raise DataError(
            f"data set {expected['name']!r} found at {root or 'its default place'} has fingerprint "
            f"{dataset.fingerprint[:12]}, but run {info.get('run_id', '?')!r} was made from "
            f"{str(expected.get('fingerprint'))[:12]}; pass data_root (--data-root) with the run's files"
        )
    return dataset
