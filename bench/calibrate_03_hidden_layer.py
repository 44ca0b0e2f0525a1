"""Calibrate the thresholds of 03-hidden-layer (the `# ---- 03-hidden-layer` rows of mnistlab/thresholds.py).

Trains the notebook's reference setups on 5 seeds and the known-broken variants of the two-layer model,
and prints each run's accuracy against the threshold of its check. A good threshold is passed by the
reference on every seed with margin, and failed by the broken variants: where an accuracy cannot tell
a variant apart (a model without ReLU is nearly as good as a linear one), the notebook's structural
tests catch it, and the "structure" lines below show them doing so.

    MNISTLAB_DATA_SOURCE=offline python bench/calibrate_03_hidden_layer.py            # everything (~10 min, 1 core)
    MNISTLAB_DATA_SOURCE=offline python bench/calibrate_03_hidden_layer.py --part full --seeds 3

The setups are the notebook's (source/03-hidden-layer): SGD, batch size 32, learning rate 0.1;
150 images = data.subset(per_class=15, seed=seed), 30 epochs, 5000 hidden units;
all the data = 20 epochs on the stand-in / 3 on the full MNIST; tuned = 256 units, lr 0.05, momentum 0.9.
"""

import argparse
import os
import time

import torch
from torch import nn

from mnistlab import data, thresholds, train

ASSIGNMENT = "03-hidden-layer"
BATCH_SIZE = 32


def two_layer(hidden, variant="reference"):
    """The notebook's two_layer(hidden), or one of the broken versions students write."""
    layers = [nn.Flatten(), nn.Linear(784, hidden)]
    if variant != "no ReLU":  # broken: nothing between the layers, so the model is linear
        layers.append(nn.ReLU())
    layers.append(nn.Linear(hidden, 10))
    if variant == "ReLU after last layer":  # broken: scores clipped at 0, so a wrong class cannot be pushed down
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def linear():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def run(make_model, train_set, test_set, loss_fn, lr, epochs, seed, momentum=0.0):
    """Seeded SGD training; returns (train accuracy, test accuracy) of the final model, and the model."""
    train.seed_everything(seed)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    train.fit(model, train_set, loss=loss_fn, optimizer=optimizer, epochs=epochs, batch_size=BATCH_SIZE,
              device="cpu", quiet=True)
    return train.evaluate(model, train_set, loss_fn)[1], train.evaluate(model, test_set, loss_fn)[1], model


def structure(variant):
    """The notebook's hidden structural tests of two_layer (test_two_layer): which of them this variant fails."""
    torch.manual_seed(1)
    model = two_layer(300, variant)
    a, b = torch.randn(8, 1, 28, 28), torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        affine = (model(a) + model(b) - model(torch.zeros_like(a)) - model(a + b)).abs().max().item() < 1e-4
        negative = model(torch.randn(64, 1, 28, 28)).min().item() < 0
    failed = (["is affine: no ReLU between the layers"] if affine else []) + \
             (["no negative score: activation after the last layer"] if not negative else [])
    return "fails the structural tests (" + "; ".join(failed) + ")" if failed else "passes the structural tests"


def report(check, ds, label, accuracies):
    minimum = thresholds.threshold(ASSIGNMENT, check, ds)
    passed = sum(a >= minimum for a in accuracies)
    print(f"  {check:17s} {label:34s} " + " ".join(f"{a:6.1%}" for a in accuracies)
          + f"   min {min(accuracies):6.1%} vs threshold {minimum:.1%}: {passed}/{len(accuracies)} pass", flush=True)


def part_150(pool, test_set, seeds, variants):
    heads = {"SVM": nn.MultiMarginLoss(), "logistic": nn.CrossEntropyLoss()}
    print(f"\n150 images, 5000 hidden units, 30 epochs ({pool.source}); accuracy per seed")
    for variant, lr in [("reference", 0.1)] + [(v, 0.001 if v == "lr 100x too small" else 0.1) for v in variants]:
        for head, loss_fn in heads.items():
            make = lambda: two_layer(5000, "reference" if variant == "lr 100x too small" else variant)  # noqa: E731
            results = [run(make, data.subset(pool, per_class=15, seed=s), test_set, loss_fn, lr, 30, s)[:2] for s in seeds]
            label = f"{variant}, {head}"
            report("150-hidden-train", pool, label, [r[0] for r in results])
            report("150-hidden-test", test_set, label, [r[1] for r in results])
    # the linear model of notebook 02 on the same subsets, for comparison (not a check of this notebook)
    for head, loss_fn in heads.items():
        results = [run(linear, data.subset(pool, per_class=15, seed=s), test_set, loss_fn, 0.1, 30, s)[:2] for s in seeds]
        print(f"  (for comparison) linear, {head:8s}      train " + " ".join(f"{r[0]:6.1%}" for r in results)
              + "   test " + " ".join(f"{r[1]:6.1%}" for r in results))


def part_full(train_set, test_set, seeds, variants):
    epochs = 20 if data.is_standin(train_set) else 3
    ce = nn.CrossEntropyLoss()
    print(f"\nall the training data ({train_set.source}), {epochs} epochs; test accuracy per seed")
    accs = [run(linear, train_set, test_set, ce, 0.1, epochs, s)[1] for s in seeds]
    report("linear-test", test_set, "linear", accs)
    accs = [run(linear, train_set, test_set, ce, 0.001, epochs, s)[1] for s in seeds]
    report("linear-test", test_set, "linear, lr 100x too small", accs)
    setups = {"two-layer-test": (100, 0.1, 0.0), "tuned-test": (256, 0.05, 0.9)}
    for check, (hidden, lr, momentum) in setups.items():
        for variant in ["reference"] + variants:
            small_lr = variant == "lr 100x too small"
            make = lambda: two_layer(hidden, "reference" if small_lr else variant)  # noqa: E731
            accs = [run(make, train_set, test_set, ce, lr / 100 if small_lr else lr, epochs, s, momentum)[1] for s in seeds]
            report(check, test_set, f"{variant} ({hidden} units)", accs)
    # A variant's other line of defence: the structural tests of exercise 1.
    for variant in variants:
        print(f"  structure: {variant:22s} {structure(variant)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--part", choices=("150", "full", "all"), default="all")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("THREADS", 1)))  # the machine is shared: one core by default
    seeds = list(range(args.seeds))
    variants = ["no ReLU", "ReLU after last layer", "lr 100x too small"]
    train_set, test_set = data.load("mnist"), data.load("mnist", "test")
    start = time.perf_counter()
    if args.part in ("150", "all"):
        part_150(train_set, test_set, seeds, variants)
    if args.part in ("full", "all"):
        part_full(train_set, test_set, seeds, variants)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
