"""Calibrate the accuracy thresholds of 05-pitfalls (mnistlab/thresholds.py).

    MNISTLAB_DATA_SOURCE=offline python bench/calibrate_05_pitfalls.py [negative-mlp] [colored-cnn]

Trains the notebook's reference (fixed) models on 5 seeds and the known-broken variants (the
published models as they are, one fix missing, a softmax before CrossEntropyLoss), and prints the
test accuracy of each run next to the threshold it is graded against. A good threshold is passed by
every reference run with margin and failed by every broken one.

The setups are the notebook's:
  negative-mlp  784-200-100-10 on inverted MNIST (4,000 training digits), SGD lr 0.1, batch 64, 5 epochs
  colored-cnn   two 64-filter 3x3 convs + max-pool, Linear(1600, 10), on colored MNIST (4,000 training
                digits), RMSprop with Keras' defaults (lr 1e-3, alpha 0.9, eps 1e-7), batch 32, 1 epoch
With the full MNIST the notebook trains on the same number of images (a stratified subset), so
the numbers printed here with MNISTLAB_DATA_SOURCE=download are comparable.
"""

import os
import sys
import time

import torch
from torch import nn

from mnistlab import data, thresholds, train

ASSIGNMENT = "05-pitfalls"
SEEDS = range(5)
MLP_LR, MLP_EPOCHS = 0.1, 5
CNN_EPOCHS, CNN_BATCH = 1, 32


class Standardize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std


def mlp(standardize=None, output_relu=False):
    layers = [nn.Flatten(), nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 100), nn.ReLU(), nn.Linear(100, 10)]
    if output_relu:
        layers.append(nn.ReLU())
    if standardize is not None:
        layers.insert(0, Standardize(*standardize))
    return nn.Sequential(*layers)


def cnn(conv_relu=True, score_relu=False, softmax=False):
    def block(c_in):
        return [nn.Conv2d(c_in, 64, 3)] + ([nn.ReLU()] if conv_relu else []) + [nn.MaxPool2d(2)]

    layers = block(3) + block(64) + [nn.Flatten(), nn.Linear(64 * 5 * 5, 10)]
    layers += [nn.ReLU()] if score_relu else []
    layers += [nn.Softmax(dim=1)] if softmax else []
    return nn.Sequential(*layers)


def datasets():
    train_set, test_set = data.load("mnist", "train"), data.load("mnist", "test")
    if not data.is_standin(train_set):  # as the notebook: the same sizes as the stand-in's
        train_set = data.subset(train_set, per_class=400, seed=0)
        test_set = data.subset(test_set, per_class=200, seed=0)
    return train_set, test_set


def calibrate_mlp(train_set, test_set):
    neg_train, neg_test = data.negative(train_set), data.negative(test_set)
    x = neg_train.images.float().div(255)
    stats = (x.mean().item(), x.std().item())
    setups = {  # name -> (make model, lr); the first is the reference
        "fixed: standardised, no output ReLU (reference)": (lambda: mlp(stats), MLP_LR),
        "1 - x instead of standardising, no output ReLU": (lambda: mlp((1.0, -1.0)), MLP_LR),
        "published: output ReLU, raw inverted inputs": (lambda: mlp(output_relu=True), MLP_LR),
        "no output ReLU only": (lambda: mlp(), MLP_LR),
        "published at lr 0.01": (lambda: mlp(output_relu=True), 0.01),
        "no output ReLU at lr 0.01": (lambda: mlp(), 0.01),
        "standardised only (output ReLU kept)": (lambda: mlp(stats, output_relu=True), MLP_LR),
    }

    def run(make, lr, seed):
        train.seed_everything(seed)
        model = make()
        history = train.fit(model, neg_train, neg_test, optimizer=torch.optim.SGD(model.parameters(), lr=lr),
                            epochs=MLP_EPOCHS, quiet=True)
        return history[-1]["test_acc"]

    report("negative-mlp", neg_test, setups, run)


def calibrate_cnn(train_set, test_set):
    color_train = data.colorize(train_set, seed=0)
    color_test = data.colorize(test_set, seed=1)
    setups = {
        "fixed: conv ReLU, raw scores (reference)": dict(conv_relu=True, score_relu=False, softmax=False),
        "published: no conv activation, ReLU on scores": dict(conv_relu=False, score_relu=True, softmax=False),
        "conv ReLU, ReLU on scores kept": dict(conv_relu=True, score_relu=True, softmax=False),
        "fixed + nn.Softmax before CrossEntropyLoss": dict(conv_relu=True, score_relu=False, softmax=True),
        "published + nn.Softmax (literal port)": dict(conv_relu=False, score_relu=True, softmax=True),
        "no conv activation, raw scores": dict(conv_relu=False, score_relu=False, softmax=False),
    }

    def run(switches, _, seed):
        train.seed_everything(seed)
        model = cnn(**switches)
        optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
        train.fit(model, color_train, optimizer=optimizer, epochs=CNN_EPOCHS, batch_size=CNN_BATCH, quiet=True)
        return (train.predict(model, color_test, batch_size=100) == color_test.labels).float().mean().item()

    report("colored-cnn", color_test, {k: (v, None) for k, v in setups.items()}, run)


def report(check, test_set, setups, run):
    minimum = thresholds.threshold(ASSIGNMENT, check, test_set)
    print(f"\n{check} on {test_set.source}: threshold {minimum:.0%}")
    for i, (name, (make, lr)) in enumerate(setups.items()):
        start = time.perf_counter()
        accs = [run(make, lr, seed) for seed in SEEDS]
        passed = sum(a >= minimum for a in accs)
        role = ("reference, must pass all" if i == 0 else "another valid fix, should pass" if name.startswith("1 - x")
                else "must fail all" if name.startswith(("published", "fixed +")) else "partial fix")
        print(f"  {name:50s} " + " ".join(f"{a:.3f}" for a in accs)
              + f"  min {min(accs):.3f} max {max(accs):.3f}  passes {passed}/{len(accs)} ({role})"
              + f"  {time.perf_counter() - start:.0f}s", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("MNISTLAB_QUIET", "1")
    torch.set_num_threads(1)  # many short trainings: one thread each is fastest on a shared machine
    checks = sys.argv[1:] or ["negative-mlp", "colored-cnn"]
    train_set, test_set = datasets()
    if "negative-mlp" in checks:
        calibrate_mlp(train_set, test_set)
    if "colored-cnn" in checks:
        calibrate_cnn(train_set, test_set)
