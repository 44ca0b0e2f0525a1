"""grader/decide/softmax.py: 01-softmax's test cells decided from handed-in values, without a notebook.

Each test hands values in as the master's hidden tests do (mnistlab.course.hand_in), from a correct
implementation and from the mistakes the tests are written for, and checks the decision and its words.
"""

import copy
import string

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grader import decide
from grader.checks import mnist
from grader.decide import softmax
from mnistlab import course, data, train


def verdict(hand_in_folder, cell):
    result = decide.decide(hand_in_folder, cell, softmax.CELLS[cell])
    return result["passed"], result["reason"] or ""


def test_nothing_handed_in_fails_every_cell(hand_in_folder):
    for cell in softmax.CELLS:
        passed, reason = verdict(hand_in_folder, cell)
        assert not passed and "nothing was handed in" in reason


def regression(outputs=10, extra=()):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, outputs), *extra)


@pytest.mark.parametrize("extra, words", [(lambda n: (), None), (lambda n: (nn.Softmax(dim=1),), "no softmax layer"),
                                          (lambda n: (nn.ReLU(), nn.Linear(n, n)), "exactly one nn.Linear")])
def test_model(hand_in_folder, extra, words):
    example = torch.rand(8, 1, 28, 28)
    course.hand_in_model("test-ex1-model", "digits", regression(10, extra(10)), example)
    course.hand_in_model("test-ex1-model", "letters", regression(26, extra(26)), example)
    passed, reason = verdict(hand_in_folder, "test-ex1-model")
    assert passed if words is None else (not passed and words in reason), reason


def train_epoch(model, ds, optimizer, loss_fn, batch_size=64, zero_grad=True, weighted=True):
    """The exercise's loop, and two of its classic mistakes."""
    total, count, batches = 0.0, 0, 0
    for x, y in train.batches(ds, batch_size, shuffle=True, device="cpu"):
        loss = loss_fn(model(x), y)
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * (len(y) if weighted else 1)
        count += len(y)
        batches += 1
    return total / (count if weighted else batches)


def hand_in_loop(**mistake):
    """What the hidden part of test-ex2-loop hands in, for train_epoch with `mistake`."""
    linear = lambda m: m[1]  # noqa: E731
    mnist_train = mnist("train")
    small = data.subset(mnist_train, per_class=10, seed=1)
    probe = regression()
    before = [p.detach().clone() for p in probe.parameters()]
    mean_loss = train_epoch(probe, small, torch.optim.SGD(probe.parameters(), lr=0.1), nn.CrossEntropyLoss(), 20, **mistake)
    course.hand_in("test-ex2-loop", returned=type(mean_loss).__name__, before_weight=before[0], before_bias=before[1],
                   after_weight=probe[1].weight, after_bias=probe[1].bias)
    tiny = data.subset(mnist_train, per_class=3, seed=2)
    start = regression()
    student = copy.deepcopy(start)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.5)
    losses = [train_epoch(student, tiny, optimizer, nn.CrossEntropyLoss(), len(tiny), **mistake) for _ in range(3)]
    course.hand_in("test-ex2-loop", start_weight=linear(start).weight, start_bias=linear(start).bias,
                   gd_weight=linear(student).weight, gd_bias=linear(student).bias, gd_losses=losses)
    course.hand_in("test-ex2-loop", fed=[32, 32, 32, 4])
    frozen = regression()
    frozen_loss = train_epoch(frozen, small, torch.optim.SGD(frozen.parameters(), lr=0.0), nn.CrossEntropyLoss(), 32, **mistake)
    course.hand_in("test-ex2-loop", frozen_weight=frozen[1].weight, frozen_bias=frozen[1].bias, frozen_loss=frozen_loss)


@pytest.mark.parametrize("mistake, words", [({}, None), ({"zero_grad": False}, "zero_grad"),
                                            ({"weighted": False}, "weight each batch by len(y)")])
def test_loop(hand_in_folder, mistake, words):
    train.seed_everything(0)
    hand_in_loop(**mistake)
    passed, reason = verdict(hand_in_folder, "test-ex2-loop")
    assert passed if words is None else (not passed and words in reason), reason


def test_loop_that_skips_images(hand_in_folder):
    train.seed_everything(0)
    hand_in_loop()
    course.hand_in("test-ex2-loop", fed=[32, 32, 32])  # the last, smaller batch dropped
    passed, reason = verdict(hand_in_folder, "test-ex2-loop")
    assert not passed and "fed 96 images" in reason


def naive_log_softmax(x):
    return x - x.exp().sum(1, keepdim=True).log()  # overflows for large logits


def hand_in_cross_entropy(log_softmax):
    def cross_entropy(x, y):
        return -log_softmax(x)[torch.arange(len(y)), y].mean()

    torch.manual_seed(0)
    logits, labels = torch.randn(8, 10) * 3, torch.randint(0, 10, (8,))
    course.hand_in("test-ex3-ce", visible_ls=log_softmax(logits), visible_ce=cross_entropy(logits, labels),
                   big=cross_entropy(torch.tensor([[1000.0, 0.0, -1000.0]]), torch.tensor([1])))
    cases, (x, y) = softmax.cross_entropy_cases()
    for i, (logits, labels) in enumerate(cases):
        course.hand_in("test-ex3-ce", **{f"ls_{i}": log_softmax(logits), f"ce_{i}": cross_entropy(logits, labels),
                                         f"logits_after_{i}": logits})
    course.hand_in("test-ex3-ce", uniform=cross_entropy(torch.zeros(1, 10), torch.tensor([3])),
                   far=cross_entropy(torch.tensor([[1000.0, 0.0, -1000.0]]), torch.tensor([2])))
    x.requires_grad_()
    cross_entropy(x, y).backward()
    course.hand_in("test-ex3-ce", gradient=x.grad)


def test_cross_entropy(hand_in_folder):
    hand_in_cross_entropy(lambda x: F.log_softmax(x, dim=1))
    assert verdict(hand_in_folder, "test-ex3-ce") == (True, "")
    hand_in_cross_entropy(naive_log_softmax)
    passed, reason = verdict(hand_in_folder, "test-ex3-ce")
    assert not passed and "finite" in reason, reason


def hand_in_fix(fix):
    raw_train, raw_test = data.load("emnist-letters", "train"), data.load("emnist-letters", "test")
    letters_train, letters_test = fix(raw_train), fix(raw_test)
    samples = [0, 1, 777, 5000, len(raw_train) - 1]
    course.hand_in("test-ex4-fix", kind=type(letters_train).__name__, train_images=letters_train.images[samples],
                   train_shape=list(letters_train.images.shape), train_labels=letters_train.labels,
                   train_classes=list(letters_train.classes), train_source=letters_train.source,
                   test_images=letters_test.images, test_labels=letters_test.labels, test_source=letters_test.source)
    images = torch.zeros(2, 28, 28, dtype=torch.uint8)
    images[0, 2, 5], images[1, 27, 0] = 200, 17
    tiny = data.Dataset(images, torch.tensor([1, 26]), ["N/A"] + list(string.ascii_lowercase), f"test ({data.EMNIST_RAW})")
    fixed = fix(tiny)
    course.hand_in("test-ex4-fix", tiny_images=fixed.images, tiny_labels=fixed.labels, tiny_classes=list(fixed.classes),
                   given_images=tiny.images, given_labels=tiny.labels, given_classes=list(tiny.classes))


def test_fix(hand_in_folder):
    hand_in_fix(data.fix_emnist)
    assert verdict(hand_in_folder, "test-ex4-fix") == (True, "")

    def not_transposed(ds):
        fixed = data.fix_emnist(ds)
        return data.Dataset(ds.images, fixed.labels, fixed.classes, fixed.source)
    hand_in_fix(not_transposed)
    passed, reason = verdict(hand_in_folder, "test-ex4-fix")
    assert not passed and "not upright" in reason, reason


def per_class_accuracy(labels, predicted, num_classes, empty=float("nan")):
    return torch.tensor([(predicted[labels == k] == k).float().mean().item() if (labels == k).any() else empty
                         for k in range(num_classes)])


@pytest.mark.parametrize("empty, words", [(float("nan"), None), (0.0, "must be NaN")])
def test_per_class(hand_in_folder, empty, words):
    function = lambda *args: per_class_accuracy(*args, empty=empty)  # noqa: E731
    labels, predicted = torch.randint(0, 26, (300,)), torch.randint(0, 26, (300,))
    course.hand_in("test-ex5-per-class", visible=function(torch.tensor([0, 0, 1, 1, 1, 2]), torch.tensor([0, 1, 1, 1, 0, 2]), 3),
                   empty=function(torch.tensor([2, 2, 0]), torch.tensor([2, 0, 1]), 4),
                   one=function(torch.tensor([7]), torch.tensor([7]), 10),
                   letters_labels=labels, letters_predicted=predicted, letters=function(labels, predicted, 26))
    passed, reason = verdict(hand_in_folder, "test-ex5-per-class")
    assert passed if words is None else (not passed and words in reason), reason
