"""Small helpers the course notebooks share: the headline figure, and the graded checks.

The graded accuracy checks go through `check_accuracy` (and `check_gain` for notebook 04). Each
measures the figure, prints it next to the course's threshold, and *hands the model in*: it
exports the model as a graph of PyTorch operations (mnistlab/handin.py), so that the course's
grader can re-measure it in a clean process on its own copy of the data. If your model cannot be
exported you find out here, while you work, not after the deadline.
"""

import json
import os
import re
import statistics
import warnings

HAND_IN = "MNISTLAB_HAND_IN"  # the grader sets this to the folder where handed-in models go


def key_result(label, accuracy, ds):
    """Show a notebook's headline figure, tagged so that `make demo` can collect it.

    label: what was measured, e.g. "softmax regression, test accuracy"; accuracy: 0..1;
    ds: the dataset it was measured on (its `.source` says which data that was).
    """
    from IPython.display import Markdown, display

    figure = {"label": label, "accuracy": float(accuracy), "data": ds.source}
    display(Markdown(f"**Key result.** {label}: **{accuracy:.1%}** on {ds.source}"), metadata={"mnistlab": figure})


def grading():
    """True while nbgrader executes the notebook (autograde or validate).

    Exploratory cells (sweeps, ablations) can be skipped then, as long as every graded figure
    is still computed:  `if not course.grading(): ...`
    """
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def check_accuracy(assignment, check, model, test, label="test accuracy", name=None, **diagnose_with):
    """The graded check "`model` reaches the threshold of `check` on `test`". Returns the accuracy.

    model: a trained nn.Module, or a list of them (then their mean accuracy counts, e.g. one per seed).
    name: what the model is handed in as, when one threshold is checked for several models (default: check).
    Raises AssertionError when the accuracy is below the threshold. When it is, the model is also
    diagnosed (mnistlab.diagnose) and the findings go to the grader for your feedback: pass
    `loss_fn=`, `history=` or `optimizer=` to let diagnose check more.
    """
    from mnistlab import diagnose, thresholds, train

    models = list(model) if isinstance(model, (list, tuple)) else [model]
    if not models:
        raise ValueError("check_accuracy needs a trained model, or a non-empty list of them")
    accuracy = statistics.mean(train.evaluate(m, test)[1] for m in models)
    minimum = thresholds.threshold(assignment, check, test)
    what = f"mean {label} of {len(models)} models" if len(models) > 1 else label
    print(f"{what} {accuracy:.1%} (threshold {minimum:.1%} on {test.source})")

    example = next(train.batches(test, batch_size=8, device="cpu"))[0]
    exported = [_export(m, example) for m in models]
    findings = None
    if accuracy < minimum:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                findings = diagnose.diagnose(models[0], test, **diagnose_with).to_dicts()
        except Exception as error:  # feedback without findings is better than a crashed check
            findings = [{"name": "diagnose-failed", "severity": "info", "why": f"{type(error).__name__}: {error}"}]
    _hand_in(assignment, name or check, exported, {"check": check, "claimed": accuracy, "threshold": minimum,
                                                   "data": test.source, "standin": test.standin,
                                                   "findings": findings})
    assert accuracy >= minimum, f"{what} {accuracy:.1%} is below the threshold {minimum:.1%}"
    return accuracy


def check_gain(assignment, check, augment, with_augment, without, test):
    """The graded check "`augment` raises the mean test accuracy by the threshold of `check`".

    with_augment, without: test accuracies, one per seed, paired seed by seed. Returns the gain.
    The augmentation is handed in too: the grader trains with it again, in a clean process.
    """
    from mnistlab import thresholds

    gain = statistics.mean(with_augment) - statistics.mean(without)
    minimum = thresholds.threshold(assignment, check, test)
    print(f"mean gain over {len(with_augment)} seeds: {gain:+.1%} (at least {minimum:+.1%})")
    example = _random_images()
    _hand_in(assignment, check, [_export(augment, example)], {"check": check, "claimed": gain, "threshold": minimum,
                                                               "data": test.source, "standin": test.standin,
                                                               "findings": None})
    assert gain >= minimum, f"augment raises the mean test accuracy by {gain:+.1%}; it must by at least {minimum:+.1%}"
    return gain


def _random_images():
    """8 random 'images' [8, 1, 28, 28] in [0, 1]: the example an augmentation is traced on."""
    import torch

    return torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def _export(model, example):
    """mnistlab.handin.export, quietly (a warning in a graded cell would cost its points)."""
    import contextlib
    import io
    import logging

    from mnistlab import handin

    torch_log = logging.getLogger("torch")
    level = torch_log.level
    torch_log.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            return handin.export(model, example)
    finally:
        torch_log.setLevel(level)


def _hand_in(assignment, name, exported, claim):
    """While the grader runs the notebook, save the models and what the notebook measured."""
    from mnistlab import handin

    folder = os.environ.get(HAND_IN)
    if not (folder and grading()):
        return
    for i, program in enumerate(exported):
        handin.save(program, folder, f"{name}.{i}")
    record = dict(claim, assignment=assignment, name=name, models=len(exported))
    with open(os.path.join(folder, f"{name}.claim.json"), "w") as handle:
        json.dump(record, handle, default=float)


NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$")  # cell ids and value names: plain file names


def hand_in(cell, **values):
    """While the grader runs the notebook, save what test cell `cell` measured: `values` by name.

    A value may be a tensor, a NumPy array, a number, a bool, a string, or a (nested) list of these.
    They are saved as plain arrays (`<hand-in>/cells/<cell>/<name>.npy`, no pickle), which the grader
    reads in its clean process. A value that cannot be saved as an array (e.g. a dict, or None) is
    saved as the text "<unsaved TYPE>", so the grader can say what your function returned.
    Outside grading (Run All, Validate) this does nothing.
    """
    import numpy as np

    folder = _cell_folder(cell)
    if folder is None:
        return
    for name, value in values.items():
        if not NAME.match(name):
            raise ValueError(f"hand_in: {name!r} is not a plain name (letters, digits, _ and -)")
        np.save(os.path.join(folder, f"{name}.npy"), _as_array(value), allow_pickle=False)


def hand_in_model(cell, name, model, example):
    """While the grader runs the notebook, hand in `model` (an nn.Module or a function of a batch) for
    test cell `cell`, as a graph traced on `example` (a batch of inputs): the grader runs the graph and
    reads its operations (e.g. "no ReLU on the output") without running your Python code."""
    from mnistlab import handin

    folder = _cell_folder(cell)
    if folder is None:
        return
    if not NAME.match(name):
        raise ValueError(f"hand_in_model: {name!r} is not a plain name (letters, digits, _ and -)")
    handin.save(_export(model, example), folder, name)


def _cell_folder(cell):
    """The folder the values of `cell` go to while the grader runs the notebook, else None."""
    root = os.environ.get(HAND_IN)
    if not (root and grading()):
        return None
    if not NAME.match(cell):
        raise ValueError(f"hand_in: {cell!r} is not a plain cell id (letters, digits, _ and -)")
    folder = os.path.join(root, "cells", cell)
    os.makedirs(folder, exist_ok=True)
    return folder


def _as_array(value):
    """`value` as a NumPy array of numbers, booleans or text (see hand_in)."""
    import numpy as np
    import torch

    def plain(v):
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu()
            return (v.float() if v.dtype in (torch.bfloat16, torch.float16) else v).numpy()
        if isinstance(v, (list, tuple)):
            return [plain(item) for item in v]
        return v

    try:
        array = np.asarray(plain(value))
    except (ValueError, TypeError):  # ragged lists, odd objects
        array = None
    if array is None or array.dtype == object:
        return np.asarray(f"<unsaved {type(value).__name__}>")
    return array
