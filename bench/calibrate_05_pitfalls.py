"""Calibrate the accuracy thresholds of 05-pitfalls (mnistlab/thresholds.py) with the course's rule.

    MNISTLAB_DATA_SOURCE=offline python bench/calibrate_05_pitfalls.py [negative-mlp] [colored-cnn]

Trains the notebook's reference (fixed) models on seeds 0-4 and the known-broken variants (the
published models as they are, one fix missing, a softmax before CrossEntropyLoss), prints the test
accuracy of each run, and the threshold the rule gives: mean of the reference's figure over the
seeds minus 3 standard deviations, rounded down to half a point (mnistlab.thresholds.rule). The
threshold is never moved to keep a broken variant out: one that passes is caught by another test
(the notebook's hidden structure tests), and the output says so.

The setups are the notebook's (same seeds, same data, one CPU thread, so the reference's figures
equal the notebook's tables):
  negative-mlp  784-200-100-10 on inverted MNIST (4,000 training digits), SGD lr 0.1, batch 64, 5 epochs
  colored-cnn   the post's Keras CNN ported: two 64-filter 3x3 convs with padding 1 + max-pool,
                Linear(64*7*7, 10); Keras' initialisation (Glorot-uniform, zero biases), Keras' RMSprop
                (lr 1e-3, rho 0.9, eps 1e-7), batches of 12, 1 epoch on 1,000 colored digits (100/class)
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
CNN_EPOCHS, CNN_BATCH, CNN_PER_CLASS = 1, 12, 100


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
        return [nn.Conv2d(c_in, 64, 3, padding=1)] + ([nn.ReLU()] if conv_relu else []) + [nn.MaxPool2d(2)]

    layers = block(3) + block(64) + [nn.Flatten(), nn.Linear(64 * 7 * 7, 10)]
    layers += [nn.ReLU()] if score_relu else []
    layers += [nn.Softmax(dim=1)] if softmax else []
    return nn.Sequential(*layers)


def keras_init(model):
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def datasets():
    train_set, test_set = data.load("mnist", "train"), data.load("mnist", "test")
    if not train_set.standin:  # as the notebook: the same sizes as the stand-in's
        train_set = data.subset(train_set, per_class=400, seed=0)
        test_set = data.subset(test_set, per_class=200, seed=0)
    return train_set, test_set


def calibrate_mlp(train_set, test_set):
    neg_train, neg_test = data.negative(train_set), data.negative(test_set)
    x = neg_train.images.float().div(255)
    stats = (x.mean().item(), x.std().item())
    setups = {  # name -> (make model, lr, role); the first is the reference
        "fixed: standardised, no output ReLU (reference)": (lambda: mlp(stats), MLP_LR, "reference"),
        "1 - x instead of standardising, no output ReLU": (lambda: mlp((1.0, -1.0)), MLP_LR,
                                                           "another fix, not the exercise's"),
        "published: output ReLU, raw inverted inputs": (lambda: mlp(output_relu=True), MLP_LR, "broken"),
        "no output ReLU only": (lambda: mlp(), MLP_LR, "broken"),
        "published at lr 0.01": (lambda: mlp(output_relu=True), 0.01, "broken"),
        "standardised only (output ReLU kept)": (lambda: mlp(stats, output_relu=True), MLP_LR,
                                                 "partial fix: the hidden structure test catches the ReLU"),
    }

    def run(make, lr, seed):
        train.seed_everything(seed)
        model = make()
        history = train.fit(model, neg_train, neg_test, optimizer=torch.optim.SGD(model.parameters(), lr=lr),
                            epochs=MLP_EPOCHS, quiet=True)
        return history[-1]["test_acc"]

    report("negative-mlp", neg_test, setups, run, extra_seeds=[2024])


def calibrate_cnn(train_set, test_set):
    color_train = data.subset(data.colorize(train_set, seed=0), per_class=CNN_PER_CLASS, seed=0)
    color_test = data.colorize(test_set, seed=1)
    setups = {
        "fixed: conv ReLU, raw scores (reference)": (dict(conv_relu=True), None, "reference"),
        "published: no conv activation, ReLU on scores": (dict(conv_relu=False, score_relu=True), None, "broken"),
        "conv ReLU, ReLU on scores kept": (dict(conv_relu=True, score_relu=True), None, "broken"),
        "fixed + nn.Softmax before CrossEntropyLoss": (dict(softmax=True), None,
                                                       "broken: the hidden structure test catches the softmax"),
        "no conv activation, raw scores": (dict(conv_relu=False), None,
                                           "half the fix: the hidden structure test asks for the conv ReLUs"),
    }

    def run(switches, _, seed):
        train.seed_everything(seed)
        model = keras_init(cnn(**switches)).to(memory_format=torch.channels_last)  # as the notebook's run_cnn
        optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
        train.fit(model, color_train, optimizer=optimizer, epochs=CNN_EPOCHS, batch_size=CNN_BATCH, quiet=True)
        model.eval()
        with torch.no_grad():
            scores = torch.cat([model(x) for x, _ in train.batches(color_test, 50, device=train.default_device())])
        return (scores.argmax(1).cpu() == color_test.labels).float().mean().item()

    report("colored-cnn", color_test, setups, run, extra_seeds=[2024])


def report(check, test_set, setups, run, extra_seeds=()):
    current = thresholds.threshold(ASSIGNMENT, check, test_set)
    print(f"\n{check} on {test_set.source}: threshold in the table {current:.1%}")
    reference = None
    for name, (make, lr, role) in setups.items():
        start = time.perf_counter()
        accs = [run(make, lr, seed) for seed in SEEDS]
        if reference is None:
            reference = accs
            minimum = thresholds.rule(accs)
            extra = {seed: run(make, lr, seed) for seed in extra_seeds}
            print(f"  rule: {thresholds.RULE}: {minimum:.1%}"
                  + (f" (table: {current:.1%})" if abs(minimum - current) > 1e-9 else " (= the table)")
                  + "".join(f"; seed {s} (the hidden test's): {a:.3f}" for s, a in extra.items()))
        passed = sum(a >= current for a in accs)
        print(f"  {name:50s} " + " ".join(f"{a:.3f}" for a in accs)
              + f"  mean {sum(accs) / len(accs):.3f} min {min(accs):.3f} max {max(accs):.3f}"
              + f"  passes {passed}/{len(accs)} ({role})  {time.perf_counter() - start:.0f}s", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("MNISTLAB_QUIET", "1")
    torch.set_num_threads(1)  # many short trainings: one thread each is fastest on a shared machine
    checks = sys.argv[1:] or ["negative-mlp", "colored-cnn"]
    train_set, test_set = datasets()
    if "negative-mlp" in checks:
        calibrate_mlp(train_set, test_set)
    if "colored-cnn" in checks:
        calibrate_cnn(train_set, test_set)
