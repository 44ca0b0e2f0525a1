"""A fast, readable training loop over in-memory datasets.

    >>> from mnistlab import data, train
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    >>> history = train.fit(model, data.load("mnist"), data.load("mnist", "test"), epochs=5)
    >>> history[-1]["test_acc"]
    0.92...

Why it is fast: the whole dataset is one uint8 tensor already in memory, so a batch is a single
index operation plus a conversion to float. The usual DataLoader + ToTensor idiom instead builds
every image from a PIL object in Python, one at a time (bench/bench_train.py measures the gap).
"""

import math
import os
import random
import time

import numpy as np
import torch
from torch import nn


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite. `.history` holds the epochs finished before that."""

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


def default_device():
    """The GPU when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


SEED_SHIFT = "MNISTLAB_SEED_SHIFT"  # set only by the instructor's `python -m grader calibrate`


def seed_everything(seed):
    """Seed Python, NumPy and PyTorch so that a run on the CPU repeats exactly.

    (The instructor's `grader calibrate` sets MNISTLAB_SEED_SHIFT=k to run a whole notebook again
    with every seed moved by 1000*k: that is how the course measures how much a figure varies
    from seed to seed. Unset, your seeds are used as they are.)
    """
    seed = seed + 1000 * int(os.environ.get(SEED_SHIFT, "0") or 0)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every GPU


def batches(ds, batch_size=64, shuffle=False, device=None):
    """Yield (x, y) batches: x float32 in [0, 1] of shape [B, C, 28, 28], y int64 labels.

    Grayscale images get a channel dimension (C = 1), as torchvision's ToTensor gives them.
    With shuffle=True the order comes from torch's global generator (see seed_everything).
    """
    device = torch.device(device) if device is not None else default_device()
    images, labels = ds.images.to(device), ds.labels.to(device)
    if images.dim() == 3:
        images = images.unsqueeze(1)
    order = torch.randperm(len(labels)).to(device) if shuffle else torch.arange(len(labels), device=device)
    for start in range(0, len(labels), batch_size):
        index = order[start : start + batch_size]
        # index_select(0, index) is images[index]; on the CPU it is several times faster.
        yield images.index_select(0, index).float().div_(255), labels.index_select(0, index)


def fit(model, train, test=None, loss_fn=None, optimizer=None, epochs=10, batch_size=64, augment=None,
        device=None, quiet=None, desc="epochs"):
    """Train `model` on `train` and return its history: one dict per epoch.

    loss_fn    the loss function, called as loss_fn(scores, labels) (default nn.CrossEntropyLoss())
    optimizer  an optimizer over model.parameters() (default SGD with lr=0.1)
    augment    a function applied to every training batch x (a float tensor [B, C, 28, 28])
    quiet      no progress bar; the default is quiet when MNISTLAB_QUIET is set or nbgrader is grading
    desc       the progress bar's label (default "epochs"): name the model when a notebook trains several,
               e.g. desc="colored CNN, epochs"

    Each history row: epoch, train_loss, train_acc (averaged over the epoch's batches, as the
    model went), test_loss, test_acc (after the epoch, in eval mode; only with `test`), seconds.
    """
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    optimizer = optimizer if optimizer is not None else torch.optim.SGD(model.parameters(), lr=0.1)
    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    history = []
    progress = _progress(range(epochs), quiet, desc=desc)
    for epoch in progress:
        start = time.perf_counter()
        model.train()
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        for step, (x, y) in enumerate(batches(train, batch_size, shuffle=True, device=device)):
            if augment is not None:
                x = augment(x)
            scores = _forward(model, x, train.labels if epoch == 0 and step == 0 else None)
            batch_loss = loss_fn(scores, y)
            optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            optimizer.step()
            total_loss += batch_loss.detach() * len(y)
            correct += (scores.argmax(1) == y).sum()
            if step % 100 == 0 and not torch.isfinite(total_loss):
                break  # diverged: stop now, reported below
        row = {"epoch": epoch + 1, "train_loss": total_loss.item() / len(train),
               "train_acc": correct.item() / len(train)}
        if not math.isfinite(row["train_loss"]):
            raise TrainingDiverged(
                f"the training loss became {row['train_loss']} in epoch {epoch + 1}: training diverged. "
                "Usual causes: a learning rate too high (try 10x smaller), or inputs far from [0, 1] "
                "(raw 0..255 pixels). `.history` holds the epochs before.",
                history,
            )
        if test is not None:
            row["test_loss"], row["test_acc"] = evaluate(model, test, loss_fn, device=device)
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        progress.set_postfix({k: round(v, 4) for k, v in row.items() if k not in ("epoch", "seconds")})
    return history


@torch.no_grad()
def evaluate(model, ds, loss_fn=None, batch_size=1000, device=None):
    """(mean loss, accuracy) of `model` on `ds`, the loss by `loss_fn` (default nn.CrossEntropyLoss()).
    The model's train/eval mode is restored afterwards."""
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    device = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    try:
        for step, (x, y) in enumerate(batches(ds, batch_size, device=device)):
            scores = _forward(model, x, ds.labels if step == 0 else None)
            total_loss += loss_fn(scores, y).item() * len(y)
            correct += (scores.argmax(1) == y).sum().item()
    finally:
        model.train(was_training)
    return total_loss / len(ds), correct / len(ds)


@torch.no_grad()
def predict(model, ds, batch_size=1000, device=None):
    """The predicted label of every image in `ds` (an int64 tensor on the CPU)."""
    device = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x).argmax(1).cpu() for x, _ in batches(ds, batch_size, device=device)])
    finally:
        model.train(was_training)


def _model_device(model):
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else default_device()


def _forward(model, x, all_labels=None):
    """model(x). Given the dataset's labels (on the first batch), it also checks that the model's
    output fits them, and turns the errors students hit into messages that say what to do."""
    if all_labels is None:
        return model(x)
    try:
        scores = model(x)
    except RuntimeError as error:
        if "shape" not in str(error) and "size" not in str(error):
            raise
        raise ValueError(
            f"the model could not take a batch of shape {list(x.shape)} ([batch, channels, 28, 28]): {error}. "
            f"A model that starts with nn.Linear needs nn.Flatten() first, and its in_features must be "
            f"{x[0].numel()} (= {' x '.join(map(str, x.shape[1:]))})."
        ) from error
    if scores.dim() != 2 or scores.shape[0] != len(x):
        raise ValueError(
            f"the model must return one row of class scores per image, [batch, classes] = [{len(x)}, C], "
            f"but returned shape {list(scores.shape)}"
        )
    low, high, outputs = all_labels.min().item(), all_labels.max().item(), scores.shape[1]
    if low < 0 or high >= outputs:
        raise ValueError(
            f"labels run from {low} to {high}, but the model has {outputs} outputs, so only labels "
            f"0..{outputs - 1} can be scored. Give the model {high + 1} outputs, or shift the labels to start "
            "at 0 (raw EMNIST letters are labelled 1..26: see mnistlab.data.fix_emnist)."
        )
    return scores


def _progress(iterable, quiet, desc):
    """A tqdm bar (a widget in Jupyter), or the bare iterable with a no-op set_postfix when quiet."""
    if quiet is None:
        quiet = bool(os.environ.get("MNISTLAB_QUIET") or os.environ.get("NBGRADER_EXECUTION"))
    if quiet:
        return _Silent(iterable)
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc)


class _Silent:
    def __init__(self, iterable):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, *args, **kwargs):
        pass
