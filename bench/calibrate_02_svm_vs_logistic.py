"""Calibrate the accuracy thresholds of 02-svm-vs-logistic (mnistlab/thresholds.py).

    MNISTLAB_DATA_SOURCE=offline python bench/calibrate_02_svm_vs_logistic.py

Trains the notebook's reference setups on 5 seeds (each seed draws a different 150-sample subset
AND a different initialisation) and the known-broken variants students hit, and prints the test
accuracy of each run next to the threshold it is graded against. A good threshold is passed by
every reference run with margin and failed by every broken one.

The setup is the notebook's: nn.Linear(784, 10) on 15 images per class, SGD lr=0.1, batch 32,
100 epochs, then the test accuracy on the held-out test images.
"""

import math
import os
import time

import torch
from torch import nn

from mnistlab import data, thresholds, train

ASSIGNMENT = "02-svm-vs-logistic"
SEEDS = range(5)
LR, BATCH_SIZE, EPOCHS = 0.1, 32, 100  # the notebook's settings


def linear():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def softmax_first():
    # Broken: the model outputs probabilities, and CrossEntropyLoss applies log_softmax on top.
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Softmax(dim=1))


# name -> (graded check, make model, loss, lr, weight decay). The first two are the references.
SETUPS = {
    "SVM (reference)": ("svm", linear, nn.MultiMarginLoss, LR, 0.0),
    "logistic (reference)": ("logistic", linear, nn.CrossEntropyLoss, LR, 0.0),
    "SVM, leftover weight_decay=10": ("svm", linear, nn.MultiMarginLoss, LR, 10.0),
    "logistic, leftover weight_decay=10": ("logistic", linear, nn.CrossEntropyLoss, LR, 10.0),
    "SVM, lr=1e-4 (far too small)": ("svm", linear, nn.MultiMarginLoss, 1e-4, 0.0),
    "logistic, lr=1e-4 (far too small)": ("logistic", linear, nn.CrossEntropyLoss, 1e-4, 0.0),
    "logistic, softmax before CrossEntropyLoss": ("logistic", softmax_first, nn.CrossEntropyLoss, LR, 0.0),
    "logistic, wrong loss (NLLLoss on raw scores)": ("logistic", linear, nn.NLLLoss, LR, 0.0),
    "logistic, wrong loss (MSELoss on one-hot)": ("logistic", linear, "mse", LR, 0.0),
}


def mse_on_one_hot(scores, y):
    """Broken: regression of the scores onto one-hot targets instead of a classification loss."""
    return nn.functional.mse_loss(scores, nn.functional.one_hot(y, scores.shape[1]).float())


def run(make, loss, lr, weight_decay, seed, full, test):
    train_set = data.subset(full, per_class=15, seed=seed)
    train.seed_everything(seed)
    model = make()
    loss_fn = mse_on_one_hot if loss == "mse" else loss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
    try:
        history = train.fit(model, train_set, loss=loss_fn, optimizer=optimizer, epochs=EPOCHS,
                            batch_size=BATCH_SIZE, device="cpu", quiet=True)
    except train.TrainingDiverged:
        return float("nan"), 0.0  # a diverged run scores nothing
    return history[-1]["train_loss"], train.evaluate(model, test)[1]


def main():
    torch.set_num_threads(1)
    full, test = data.load("mnist"), data.load("mnist", "test")
    print(f"train pool: {full.source}\ntest: {test.source}\n")
    for name, (check, make, loss, lr, weight_decay) in SETUPS.items():
        start = time.perf_counter()
        results = [run(make, loss, lr, weight_decay, seed, full, test) for seed in SEEDS]
        minimum = thresholds.threshold(ASSIGNMENT, check, test)
        accuracies = [acc for _, acc in results]
        verdict = "all pass" if min(accuracies) >= minimum else "all FAIL" if max(accuracies) < minimum else "MIXED"
        mean = sum(accuracies) / len(accuracies)
        std = math.sqrt(sum((a - mean) ** 2 for a in accuracies) / (len(accuracies) - 1))
        print(f"{name:46s} check {check!r:10s} threshold {minimum:.2f}: {verdict:8s} "
              f"test acc {' '.join(f'{a:.3f}' for a in accuracies)}  mean {mean:.3f} ± {std:.3f}  "
              f"last train loss {' '.join(f'{l:.3f}' for l, _ in results)}  ({time.perf_counter() - start:.0f} s)",
              flush=True)
    print(f"\nln 10 = {math.log(10):.3f} (the cross-entropy of a uniform prediction over 10 classes)")


if __name__ == "__main__":
    os.environ.setdefault("MNISTLAB_QUIET", "1")
    main()
