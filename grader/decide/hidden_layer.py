"""Notebook 03 (a hidden layer): every test cell decided from what it handed in (see grader/decide/__init__.py).

The models come in as graphs: their layers are read from the graph (the shapes of its linear operations and its
parameters), and the grader runs them itself on its own inputs and its own copy of the data. The accuracy
thresholds of test_150 and test_full_data are re-measured by grader/checks.py; the functions here decide the
rest of those cells' checks.
"""

import math

import torch
from torch import nn

from grader.checks import mnist, small_mnist
from grader.clean import accuracy
from grader.decide import require
from mnistlab import train

EPOCHS_SMALL = 30  # as the notebook's EPOCHS_SMALL: the 150-image runs train this many epochs
HEADS = {"SVM": nn.MultiMarginLoss(), "logistic": nn.CrossEntropyLoss()}  # as the notebook's HEADS


# --- what a handed-in graph is made of -----------------------------------------------------------------------

def parameter_count(got, name):
    """The number of parameters of graph `name` (the model's parameters(), used in the forward pass or not)."""
    return sum(math.prod(shape) for shape in got.parameter_shapes(name))


def evaluate(run, ds, loss_fn):
    """(mean loss per image, accuracy) of `run` (a function of a batch) on `ds`, as train.evaluate computes them."""
    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for x, y in train.batches(ds, batch_size=1000, device="cpu"):
            scores = run(x)
            total_loss += loss_fn(scores, y).item() * len(y)
            correct += (scores.argmax(1) == y).sum().item()
    return total_loss / len(ds), correct / len(ds)


# --- the test cells ------------------------------------------------------------------------------------------

def is_affine(run, a, b):
    """f is affine (linear + constant) exactly when f(a) + f(b) - f(0) == f(a + b) for all a, b."""
    with torch.no_grad():
        gap = run(a) + run(b) - run(torch.zeros_like(a)) - run(a + b)
    return gap.abs().max().item() < 1e-4


def two_layer(got):
    """test_two_layer: two_layer(5000)'s scores and parameters; for 7 and 300 hidden units, the two Linear
    layers' sizes, a nonlinearity between them (none with relu=False) and none after the last one."""
    generator = torch.Generator().manual_seed(1)
    a, b, images = (torch.randn(n, 1, 28, 28, generator=generator) for n in (8, 8, 64))
    scores = got.model("relu-5000")(torch.rand(4, 1, 28, 28, generator=generator))
    require(tuple(scores.shape) == (4, 10), f"4 images must give scores of shape [4, 10], got {list(scores.shape)}")
    n_parameters, expected = parameter_count(got, "relu-5000"), 784 * 5000 + 5000 + 5000 * 10 + 10
    require(n_parameters == expected, f"{n_parameters} parameters; expected {expected}")

    for hidden in (7, 300):
        for name, call in ((f"relu-{hidden}", f"two_layer({hidden})"), (f"plain-{hidden}", f"two_layer({hidden}, relu=False)")):
            sizes = got.linear_layers(name)
            require(sizes == [(784, hidden), (hidden, 10)], f"{call}: Linear layers {sizes}")
        with_relu, without = got.model(f"relu-{hidden}"), got.model(f"plain-{hidden}")
        require(not is_affine(with_relu, a, b), "two_layer(hidden) must have a ReLU between the layers")
        require(is_affine(without, a, b), "two_layer(hidden, relu=False) must have no nonlinearity at all")
        with torch.no_grad():
            require(with_relu(images).min() < 0, "no activation after the last layer: scores must be able to be negative")


def trained_150(got):
    """test_150: each of the four runs is the right model, trained EPOCHS_SMALL epochs with its head's loss
    (the history's last training loss is that loss of the model on the 150 images)."""
    x, y = next(train.batches(small_mnist(), batch_size=len(small_mnist()), device="cpu"))
    for head, loss_fn in HEADS.items():
        for name, short, expected in (("linear", "linear", [10]), ("5000 hidden", "5000", [5000, 10])):
            key = f"{head}-{short}"
            sizes = [n_out for n_in, n_out in got.linear_layers(key)]
            require(sizes == expected, f"runs[{head!r}, {name!r}] has Linear layers {sizes}")
            require(got[f"{key}-epoch"] == EPOCHS_SMALL, f"runs[{head!r}, {name!r}]: train for EPOCHS_SMALL epochs")
            with torch.no_grad():
                loss = loss_fn(got.model(key)(x), y).item()
            require(abs(got[f"{key}-train_loss"] - loss) < 1e-4, f"runs[{head!r}, {name!r}] must be trained with {loss_fn}")


def my_evaluate(got):
    """test_my_evaluate: train.evaluate's figures (5000-unit model: 150 training images and the test set;
    a model with dropout in training mode: batches of 7, 150 and 1000), as Python floats, without calling
    train.evaluate, the model's mode restored and no gradients."""
    model = got.model("model")
    for split, ds in (("small", small_mnist()), ("test", mnist("test"))):
        loss, acc = got[f"mine_{split}"].tolist()
        reference = evaluate(model, ds, nn.CrossEntropyLoss())
        require(abs(acc - reference[1]) < 1e-9, f"accuracy {acc} differs from train.evaluate's {reference[1]}")
        require(abs(loss - reference[0]) < 1e-5 * max(1, reference[0]),
                f"mean loss {loss:.6f} differs from train.evaluate's {reference[0]:.6f}: weigh each batch by its size")

    require(got["evaluate_calls"] == 0, "my_evaluate must loop over train.batches itself, not call train.evaluate")
    require(got["training_after"] is True, "my_evaluate must restore the model's training mode")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        dropout_model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))
    dropout_model.train()
    reference = train.evaluate(dropout_model, small_mnist(), nn.MultiMarginLoss(), device="cpu")
    types = got["types"]  # [type of the loss, type of the accuracy] for each batch size
    require(isinstance(types, list) and all(kind in ("float", "float64") for pair in types for kind in pair),
            "return Python floats (.item())")  # (NumPy's float64 is a Python float too)
    for (loss, acc), b in zip(got["results"].tolist(), (7, 150, 1000)):
        require(abs(acc - reference[1]) < 1e-9 and abs(loss - reference[0]) < 1e-5,
                f"batch size {b}: ({loss:.5f}, {acc:.4f}) vs train.evaluate's ({reference[0]:.5f}, {reference[1]:.4f}): "
                "evaluate in eval mode (dropout off) and weigh each batch by its size")
    require(not got["has_grad"].any(), "no gradients in an evaluation")


def full_data(got):
    """test_full_data (besides the accuracy thresholds): the tuned model is a two-layer ReLU network of at most
    1000 hidden units, trained EPOCHS epochs, and beats the linear model by more than a point on the test set."""
    sizes = [n_out for n_in, n_out in got.linear_layers("tuned")]
    require(len(sizes) == 2 and sizes[0] <= 1000 and sizes[1] == 10,
            f"tuned_setup: a two_layer(hidden <= 1000), got Linear outputs {sizes}")
    require(any(op in ("relu", "relu_") for op in got.operations("tuned")), "the tuned model keeps its ReLU")
    epochs = 12 if mnist("train").standin else 3  # the notebook's EPOCHS, for the data the grader has
    require(got["tuned_epochs"] == epochs, f"the tuned model trains for EPOCHS epochs like the others ({epochs} on "
                                           f"this data), not {got['tuned_epochs']}")
    tuned, linear = accuracy(got.model("tuned"), mnist("test")), accuracy(got.model("linear"), mnist("test"))
    require(tuned > linear + 0.01, f"the tuned two-layer model should beat the linear one (test accuracy {tuned:.1%} "
                                   f"against the linear model's {linear:.1%})")


# name: (in, hidden, out, scale of the weights (None: as initialised), seed), as in the test cell
COLLAPSE_CASES = {"visible": (784, 100, 10, None, 0), "small": (5, 3, 7, 1.0, 1), "wide": (20, 64, 2, 3.0, 2),
                  "narrow": (784, 1, 10, 0.5, 3)}


def collapse(got):
    """test_collapse: for each case, collapse(first, second) is a new nn.Linear(in, out) equal to second(first(x)),
    and leaves the two layers as they were."""
    for case, (n_in, n_hidden, n_out, scale, seed) in COLLAPSE_CASES.items():
        with torch.random.fork_rng():  # the same layers and inputs as the test cell's
            torch.manual_seed(seed)
            first, second = nn.Linear(n_in, n_hidden), nn.Linear(n_hidden, n_out)
            if scale is not None:
                with torch.no_grad():
                    for p in (*first.parameters(), *second.parameters()):
                        p.mul_(scale).add_(0.1)
            x = torch.rand(32, n_in) if scale is None else torch.randn(50, n_in)
        classes = got[f"{case}-classes"]
        require("torch.nn.modules.linear.Linear" in classes, f"collapse must return an nn.Linear, got {classes[0]}")
        features = tuple(got[f"{case}-features"].tolist())
        require(features == (n_in, n_out), f"collapse of Linear({n_in}, {n_hidden}) and Linear({n_hidden}, {n_out}) "
                                           f"must be a Linear({n_in}, {n_out}), got a Linear{features}")
        with torch.no_grad():
            expected = second(first(x))
        outputs = got[f"{case}-outputs"]
        require(outputs.shape == expected.shape, f"collapse({n_in}->{n_hidden}->{n_out}) gives outputs of shape "
                                                 f"{list(outputs.shape)} for {len(x)} inputs; expected {list(expected.shape)}")
        difference = (outputs - expected).abs().max().item()
        tolerance = 1e-5 if scale is None else 1e-4 * max(1.0, expected.abs().max().item())
        require(difference < tolerance, f"collapse({n_in}->{n_hidden}->{n_out}) is off by {difference:.1e}")
        after = [got[f"{case}-{p}"] for p in ("first_weight", "first_bias", "second_weight", "second_bias")]
        require(all(torch.equal(a, b.detach()) for a, b in zip(after, (*first.parameters(), *second.parameters()))),
                "collapse must not change the two layers")
        require(got[f"{case}-weight_ptr"] not in got[f"{case}-layer_ptrs"].tolist(), "return a new layer")


CELLS = {"test_two_layer": two_layer, "test_150": trained_150, "test_my_evaluate": my_evaluate,
         "test_full_data": full_data, "test_collapse": collapse}
