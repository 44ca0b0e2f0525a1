"""The course's figures. Each function returns a matplotlib Figure.

In Jupyter a returned figure shows once (each figure is closed in pyplot before it is returned,
so it is not drawn a second time at the end of the cell); in a script, call fig.savefig(path).
"""

import math

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator, PercentFormatter
import torch
from torch import nn


def learning_curves(history, title=None):
    """Loss and accuracy per epoch, train (solid) and test (dashed).

    `history` is what mnistlab.train.fit returns, or a dict {label: history} to compare runs
    (e.g. one per weight decay). The accuracy axis is zoomed to the data (see accuracy_limits), in
    percent; when it does not start at 0, its title says where it starts.
    """
    runs = history if isinstance(history, dict) else {None: history}
    for label, rows in runs.items():
        if not rows:
            name = "the history" if label is None else f"history {label!r}"
            raise ValueError(f"{name} is empty: train for at least one epoch")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    accuracies = []
    for (label, rows), color in zip(runs.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 10):
        epochs = [row["epoch"] for row in rows]
        prefix = f"{label}: " if label is not None else ""
        for split, style in (("train", "-"), ("test", "--")):
            if f"{split}_loss" not in rows[0]:
                continue
            ax_loss.plot(epochs, [row[f"{split}_loss"] for row in rows], style, color=color, label=f"{prefix}{split}")
            ax_acc.plot(epochs, [row[f"{split}_acc"] for row in rows], style, color=color, label=f"{prefix}{split}")
            accuracies += [row[f"{split}_acc"] for row in rows]
    low, high = accuracy_limits(accuracies)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", ylim=(low, high),
               title="accuracy" if low == 0 else f"accuracy (axis zoomed to the data: from {low:.0%})")
    ax_acc.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    if len(runs) == 1:
        ax_loss.legend(fontsize="small")
        ax_acc.legend(fontsize="small")
        fig.tight_layout()
    else:  # several runs: one legend below both plots, so it never hides a curve
        handles, labels = ax_acc.get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize="small")
        fig.tight_layout(rect=(0, 0.06 * -(-len(labels) // 4) + 0.02, 1, 1))
    plt.close(fig)
    return fig


def accuracy_limits(accuracies, span=0.1):
    """(low, high): the accuracy axis of learning_curves, zoomed to the data so that differences of a
    point or two show (85-92% squashed into the top of a 0-100% axis hides them).

    The axis covers every accuracy with a margin of a tenth of their range (at least half a point) on
    each side, is at least `span` (10 points) tall, ends at 101% at most, and starts at 0 when the data
    come within `span` of 0 (then the whole scale shows). Both ends are whole percents."""
    accuracies = [float(a) for a in accuracies]
    if not accuracies:
        return 0.0, 1.01
    low, high = min(accuracies), max(accuracies)
    margin = max((high - low) / 10, 0.005)
    low, high = low - margin, high + margin
    if high - low < span:  # nearly flat: widen around the middle
        middle = (low + high) / 2
        low, high = middle - span / 2, middle + span / 2
    if high > 1.01:
        low, high = low - (high - 1.01), 1.01
    low = 0.0 if low < span else math.floor(low * 100 + 1e-9) / 100
    high = max(high, low + span)  # (starting at 0 can have cut the widened axis short)
    return low, min(1.01, math.ceil(high * 100 - 1e-9) / 100)


def image_grid(images, labels=None, predictions=None, classes=None, n=40, ncols=10):
    """The first `n` images with their labels; wrong predictions are titled in red as "pred (true)".

    `images` is a mnistlab Dataset (its labels and classes are used) or a tensor of shape
    [N, 28, 28], [N, 1, 28, 28] or [N, 3, 28, 28], uint8 0..255 or float 0..1.
    """
    if hasattr(images, "images"):  # a Dataset
        ds = images
        images = ds.images
        labels = ds.labels if labels is None else labels
        classes = ds.classes if classes is None else classes
    images = torch.as_tensor(images)[:n].detach().cpu()
    if images.dim() == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.dim() not in (3, 4) or (images.dim() == 4 and images.shape[1] != 3):
        raise ValueError(f"images must be [N, 28, 28], [N, 1, 28, 28] or [N, 3, 28, 28], got {list(images.shape)}")
    if images.dtype == torch.uint8:
        images = images.float() / 255
    name = (lambda k: classes[k]) if classes is not None else str
    rows = max(1, -(-len(images) // ncols))
    fig, axes = plt.subplots(rows, ncols, figsize=(ncols * 1.1, rows * 1.3), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(images):
            continue
        if images.dim() == 4:
            ax.imshow(images[i].permute(1, 2, 0).clamp(0, 1).numpy())
        else:
            ax.imshow(images[i].numpy(), cmap="gray", vmin=0, vmax=1)
        if predictions is not None:
            guess = int(predictions[i])
            wrong = labels is not None and guess != int(labels[i])
            text = f"{name(guess)} ({name(int(labels[i]))})" if wrong else name(guess)
            ax.set_title(text, fontsize=9, color="red" if wrong else "black")
        elif labels is not None:
            ax.set_title(name(int(labels[i])), fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


def confusion_matrix(labels, predictions, classes=None, title=None):
    """Counts of (true label, predicted label): row = truth, column = prediction."""
    labels, predictions = torch.as_tensor(labels).long().cpu(), torch.as_tensor(predictions).long().cpu()
    if labels.shape != predictions.shape:
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions: give one prediction per label")
    size = len(classes) if classes is not None else int(max(labels.max(), predictions.max())) + 1
    counts = torch.bincount(labels * size + predictions, minlength=size * size).reshape(size, size)
    fig, ax = plt.subplots(figsize=(1.5 + 0.35 * size, 1 + 0.35 * size))
    image = ax.imshow(counts.numpy(), cmap="Blues")
    names = classes if classes is not None else [str(k) for k in range(size)]
    ax.set_xticks(range(size), names, rotation=90 if size > 12 else 0)
    ax.set_yticks(range(size), names)
    ax.set(xlabel="predicted", ylabel="true", title=title or f"accuracy {counts.trace() / counts.sum():.1%}")
    if size <= 12:
        for (i, j), count in zip(((i, j) for i in range(size) for j in range(size)), counts.flatten().tolist()):
            if count:
                ax.text(j, i, count, ha="center", va="center", fontsize=8,
                        color="white" if count > counts.max() / 2 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    plt.close(fig)
    return fig


def weight_templates(weights, classes=None, ncols=10):
    """Each class's weights in a linear layer, shown as a 28x28 image: what the model "looks for".

    `weights` is an nn.Linear with 784 inputs, a model containing one (its first is used), or a
    tensor [classes, 784]. Red = evidence for the class, blue = evidence against.
    """
    if isinstance(weights, nn.Module):
        linears = [m for m in weights.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError("this model has no nn.Linear layer to show")
        weights = linears[0].weight
    weights = torch.as_tensor(weights).detach().float().cpu()
    if weights.dim() != 2 or weights.shape[1] != 784:
        raise ValueError(f"weight templates need a [classes, 784] weight matrix, got {list(weights.shape)}")
    rows = -(-len(weights) // ncols)
    fig, axes = plt.subplots(rows, ncols, figsize=(ncols * 1.2, rows * 1.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(weights):
            limit = weights[k].abs().max().item() or 1.0
            ax.imshow(weights[k].reshape(28, 28).numpy(), cmap="bwr", vmin=-limit, vmax=limit)
            ax.set_title(classes[k] if classes is not None else str(k), fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig
