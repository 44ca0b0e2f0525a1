"""Shared test setup: offline data, no progress bars, no plot windows, and IDX fixture writers.

These are only defaults: a test that needs another value sets it with monkeypatch. Offline data
means no test ever waits on (or needs) the network.
"""

import os

os.environ.setdefault("MNISTLAB_QUIET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import struct  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# The tests train tiny models: one thread is fastest, and on a busy machine threads that wait for
# each other can make a step 10-100x slower.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def offline_data_by_default(monkeypatch):
    """Each test loads the offline stand-ins unless MNISTLAB_DATA_SOURCE says otherwise (set only
    around the test, so notebooks run after the tests keep the caller's setting)."""
    if "MNISTLAB_DATA_SOURCE" not in os.environ:
        monkeypatch.setenv("MNISTLAB_DATA_SOURCE", "offline")


def write_idx(path, tensor):
    """Write a uint8 tensor in the IDX format of the MNIST files (uncompressed).

    Header: two zero bytes, the type code 0x08 (unsigned byte), the number of dimensions, then
    each dimension as a big-endian 32-bit integer; then the values, row by row.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, tensor.dim()) + struct.pack(f">{tensor.dim()}I", *tensor.shape)
    path.write_bytes(header + tensor.to(torch.uint8).contiguous().numpy().tobytes())


def random_split(n, labels, seed):
    """`n` random uint8 images [n, 28, 28] and labels drawn from `labels` (an int64 tensor)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=generator)
    return images, labels[torch.randint(0, len(labels), (n,), generator=generator)]


# torchvision's layout under the data folder: <root>/<folder>/raw/<prefix>-{images-idx3,labels-idx1}-ubyte
IDX_LAYOUT = {
    "mnist": ("MNIST", {"train": "train", "test": "t10k"}, range(10)),
    "fashion-mnist": ("FashionMNIST", {"train": "train", "test": "t10k"}, range(10)),
    "emnist-letters": ("EMNIST", {"train": "emnist-letters-train", "test": "emnist-letters-test"}, range(1, 27)),
}


@pytest.fixture
def idx_files(tmp_path, monkeypatch):
    """write(name) puts small IDX files for both splits of `name` in torchvision's layout under a
    fresh data folder (MNISTLAB_DATA) and returns {split: (images, labels)} as written."""
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path))

    def write(name, sizes=(12, 7)):
        folder, prefixes, labels = IDX_LAYOUT[name]
        written = {}
        for seed, (split, n) in enumerate(zip(("train", "test"), sizes)):
            images, targets = random_split(n, torch.tensor(list(labels)), seed)
            raw = tmp_path / folder / "raw"
            write_idx(raw / f"{prefixes[split]}-images-idx3-ubyte", images)
            write_idx(raw / f"{prefixes[split]}-labels-idx1-ubyte", targets)
            written[split] = images, targets
        return written

    return write


@pytest.fixture
def hand_in_folder(tmp_path, monkeypatch):
    """An empty hand-in folder, in the environment of a grading run (so that mnistlab.course.hand_in saves
    there): the tests of grader/decide hand values in as the test cells do, then decide them."""
    from mnistlab import course

    monkeypatch.setenv(course.HAND_IN, str(tmp_path))
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    return tmp_path


@pytest.fixture
def no_network(monkeypatch):
    """torchvision's downloads fail as they do offline (urllib's URLError), and never reach the
    network. Returns the list of URLs that a download was attempted for."""
    import torchvision.datasets.mnist as tv_mnist
    from urllib.error import URLError

    attempts = []

    def fail(url, *args, **kwargs):
        attempts.append(url)
        raise URLError("[Errno -3] Temporary failure in name resolution (the tests' no_network fixture)")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", fail)
    return attempts


_SESSION_DATA_DIR = os.environ.get("MNISTLAB_DATA")  # as the session started, before any monkeypatch
_loaded = {}


@pytest.fixture(scope="session")
def offline():
    """offline(name, split="train") -> the offline stand-in dataset, loaded once per test session
    from the usual data folder (where the stand-ins cache what they parse or render)."""
    from unittest import mock

    from mnistlab import data

    def load(name, split="train"):
        if (name, split) not in _loaded:
            env = {"MNISTLAB_DATA_SOURCE": "offline"}
            with mock.patch.dict(os.environ, env):
                if _SESSION_DATA_DIR is None:
                    os.environ.pop("MNISTLAB_DATA", None)
                else:
                    os.environ["MNISTLAB_DATA"] = _SESSION_DATA_DIR
                _loaded[name, split] = data.load(name, split)
        return _loaded[name, split]

    return load
