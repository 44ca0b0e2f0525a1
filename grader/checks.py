"""What the grader re-measures itself, for every accuracy threshold of the course (see grader/clean.py).

Each graded accuracy check of a notebook calls `mnistlab.course.check_accuracy` (or `check_gain`),
which hands the model in under a name. This table says, for each (assignment, hand-in name):

  cell       the grade cell whose points depend on it
  threshold  the check's key in mnistlab.thresholds.TABLE
  test       how the grader builds its own copy of the data the figure is measured on
  pool       images the model may legitimately have trained on, with the same transform: a model that
             does far better on `test` than on these was fit to the test set (None: not checked)
  kind       "accuracy" (of the handed-in model) or "gain" (train again with the handed-in augmentation)
  seeds      for "gain": the seeds to train on (paired: with and without the augmentation)
  handin     the hand-in to score, when another check's (the same augmentation, other seeds)

The data functions repeat, on purpose, how each notebook builds its data: the grader must not take
the student's word for it. tests/test_course.py checks that the table and the notebooks agree.
"""

from dataclasses import dataclass
from functools import lru_cache

from mnistlab import data


@dataclass(frozen=True)
class Check:
    cell: str
    threshold: str
    test: object
    pool: object = None
    kind: str = "accuracy"
    seeds: tuple = ()
    handin: str = None


@lru_cache(maxsize=None)
def mnist(split):
    return data.load("mnist", split)


@lru_cache(maxsize=None)
def letters(split):
    return data.fix_emnist(data.load("emnist-letters", split))


@lru_cache(maxsize=None)
def pitfalls_mnist(split):
    """Notebook 05's MNIST: the stand-in's sizes (400 / 200 per class) when the data is the full MNIST."""
    ds = mnist(split)
    if ds.standin:
        return ds
    return data.subset(ds, per_class=400 if split == "train" else 200, seed=0)


@lru_cache(maxsize=None)
def small_mnist():
    """Notebook 03's 150 training images."""
    return data.subset(mnist("train"), per_class=15, seed=0)


@lru_cache(maxsize=None)
def negative(split):
    return data.negative(pitfalls_mnist(split))


@lru_cache(maxsize=None)
def colored(split):
    return data.colorize(pitfalls_mnist(split), seed=0 if split == "train" else 1)


def _mnist_test():
    return mnist("test")


def _mnist_train():
    return mnist("train")


CHECKS = {
    ("01-softmax", "mnist-linear"): Check("test-mnist-accuracy", "mnist-linear", _mnist_test, _mnist_train),
    ("01-softmax", "letters-linear"): Check("test-letters-accuracy", "letters-linear", lambda: letters("test"),
                                            lambda: letters("train")),
    ("02-svm-vs-logistic", "svm"): Check("test-ex1-svm", "svm", _mnist_test, _mnist_train),
    ("02-svm-vs-logistic", "logistic"): Check("test-ex3-logistic", "logistic", _mnist_test, _mnist_train),
    ("02-svm-vs-logistic", "svm-seeds"): Check("test-ex5-seeds", "svm", _mnist_test, _mnist_train),
    ("02-svm-vs-logistic", "logistic-seeds"): Check("test-ex5-seeds", "logistic", _mnist_test, _mnist_train),
    ("03-hidden-layer", "150-hidden-train-SVM"): Check("test_150", "150-hidden-train", small_mnist),
    ("03-hidden-layer", "150-hidden-train-logistic"): Check("test_150", "150-hidden-train", small_mnist),
    ("03-hidden-layer", "150-hidden-test-SVM"): Check("test_150", "150-hidden-test", _mnist_test, _mnist_train),
    ("03-hidden-layer", "150-hidden-test-logistic"): Check("test_150", "150-hidden-test", _mnist_test, _mnist_train),
    ("03-hidden-layer", "linear-test"): Check("test_full_data", "linear-test", _mnist_test, _mnist_train),
    ("03-hidden-layer", "two-layer-test"): Check("test_full_data", "two-layer-test", _mnist_test, _mnist_train),
    ("03-hidden-layer", "tuned-test"): Check("test_full_data", "tuned-test", _mnist_test, _mnist_train),
    ("04-augmentation", "gain"): Check("test_augment", "gain", _mnist_test, kind="gain", seeds=(0, 1, 2, 3, 4)),
    ("04-augmentation", "gain-fresh"): Check("test_augment_fresh_seeds", "gain", _mnist_test, kind="gain",
                                             seeds=(100, 101, 102, 103, 104), handin="gain"),
    ("05-pitfalls", "negative-mlp"): Check("test-ex2-accuracy", "negative-mlp", lambda: negative("test"),
                                           lambda: negative("train")),
    ("05-pitfalls", "colored-cnn"): Check("test-ex3-accuracy", "colored-cnn", lambda: colored("test"),
                                          lambda: colored("train")),
}


def checks_of(assignment):
    """{hand-in name: Check} for one assignment (empty for an assignment this course does not know)."""
    return {name: check for (a, name), check in CHECKS.items() if a == assignment}
