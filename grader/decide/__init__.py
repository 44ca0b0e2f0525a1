"""Every test cell's pass or fail, decided in the grader's clean process from what the cell handed in.

nbgrader runs the tests inside the student's kernel, where the student's code can change what an
`assert` does (strip it, catch its error, print a partial score before it). So the course's test cells
do not decide anything there: their hidden part calls the student's functions on the grader's inputs
and hands the outputs in (`mnistlab.course.hand_in`, `hand_in_model`). This package reads those values
in a process that never ran student code (grader/clean.py runs it in the sandbox) and decides:

  DECIDERS   {assignment: module}; each module has CELLS = {grade cell id: decide function}
  Handed     what one cell handed in: got["name"] (a tensor, or a Python number / str when 0-d; got.shape
             says which), got.model("name") (the graph as a function of a batch), got.operations("name")
             (its aten ops), got.calls("name", "conv2d") (each call's arguments), got.linear_layers("name")
             ([(in, out)]), got.parameter_shapes("name")
  require    the decide functions' assert: require(condition, "what is wrong, in words")

A decide function raises Failed (require does) or returns; it never trusts a verdict from the kernel,
and it computes expected values itself (from PyTorch's own functions and its own copy of the data).
The inputs the hidden code uses are written again in the decide function (same seeds): the grader
does not take the kernel's word for what it was given.
"""

import importlib
import re
from pathlib import Path

import numpy as np

DECIDERS = {
    "01-softmax": "grader.decide.softmax",
    "02-svm-vs-logistic": "grader.decide.svm_vs_logistic",
    "03-hidden-layer": "grader.decide.hidden_layer",
    "04-augmentation": "grader.decide.augmentation",
    "05-pitfalls": "grader.decide.pitfalls",
}
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$")  # as mnistlab.course.NAME
MAX_VALUE = 200 * 2**20  # bytes of one handed-in array the grader will read


class Failed(Exception):
    """A test cell's check failed; the message says why, in words for the student."""


class Missing(Failed):
    """The cell did not hand in a value the decision needs (it stopped before its end)."""


def require(condition, message):
    """The decide functions' assert (not `assert`: `python -O` would skip those)."""
    if not condition:
        raise Failed(message)


class Handed:
    """The values one test cell handed in (see mnistlab.course.hand_in), read without pickle."""

    def __init__(self, folder, cell):
        self.folder = Path(folder, "cells", cell)

    def __contains__(self, name):
        return NAME.match(name) is not None and Path(self.folder, f"{name}.npy").is_file()

    def __getitem__(self, name):
        import torch

        path = Path(self.folder, f"{name}.npy")
        if name not in self:
            raise Missing(f"the test cell did not hand in `{name}`: it stopped before that point (see its error)")
        if path.stat().st_size > MAX_VALUE:
            raise Failed(f"the handed-in `{name}` is larger than {MAX_VALUE >> 20} MiB")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise Failed(f"the handed-in `{name}` is not a plain array: {error}") from None
        if array.dtype.kind in "US":
            return array.item() if array.ndim == 0 else array.tolist()
        if array.ndim == 0:
            return array.item()
        return torch.from_numpy(array.copy())

    def shape(self, name):
        """The shape of the handed-in array `name` (a 0-d tensor's is (): got[name] gives it as a number)."""
        self[name]  # the same checks
        return tuple(np.load(Path(self.folder, f"{name}.npy"), mmap_mode="r", allow_pickle=False).shape)

    def parameter_shapes(self, name):
        """[shape of each parameter] of the handed-in model `name` (its weights file, in the model's order)."""
        self.model(name)  # the same checks as a graph that will run
        with np.load(Path(self.folder, f"{name}.weights.npz"), allow_pickle=False) as arrays:
            return [tuple(arrays[k].shape) for k in arrays.files if k.startswith("param:")]

    def model(self, name):
        """The handed-in graph `name` as a function of a batch (grader/handin.py: checked, no pickle)."""
        from grader import handin

        try:
            return handin.load(self.folder, name)
        except FileNotFoundError:
            raise Missing(f"the test cell did not hand in the model `{name}`: it stopped before that point "
                          "(see its error; a model that cannot be exported stops it too)") from None
        except handin.UnsafeArtifact as error:
            raise Failed(f"the handed-in model `{name}` was refused: {error}") from None

    def calls(self, name, op):
        """Each call of the aten operation `op` (e.g. "linear", "conv2d") in the handed-in graph `name`, in order,
        as {argument: value}: a tensor argument as its shape (a linear layer's "weight" is [out, in]), the
        others as written (e.g. a convolution's "padding" [1, 1]). Arguments left at their default are absent."""
        import json

        self.model(name)  # the graph's checks (and a clear reason when it was not handed in)
        graph = json.loads(Path(self.folder, f"{name}.graph.json").read_bytes())["graph_module"]["graph"]
        shapes = {tensor: [size.get("as_int") for size in value["sizes"]] for tensor, value in graph["tensor_values"].items()}
        found = []
        for node in graph["nodes"]:
            target = node["target"]
            if target.startswith("torch.ops.aten.") and target.count(".") >= 3 and target.split(".")[3] == op:
                arguments = {}
                for given in node["inputs"]:
                    kind, value = next(iter(given["arg"].items()))
                    arguments[given["name"]] = shapes[value["name"]] if kind == "as_tensor" else value
                found.append(arguments)
        return found

    def linear_layers(self, name):
        """(in_features, out_features) of each linear layer (aten.linear) the graph `name` calls, in order."""
        return [(call["weight"][1], call["weight"][0]) for call in self.calls(name, "linear")]

    def operations(self, name):
        """The aten operations of the handed-in graph `name`, in order, e.g. ["flatten", "linear", "relu"]."""
        from grader import handin

        self.model(name)  # the same checks as a graph that will run
        return handin.operations(self.folder, name)


def cells_of(assignment):
    """{grade cell id: decide function} of an assignment (empty for an assignment this course does not know)."""
    module = DECIDERS.get(assignment)
    return dict(importlib.import_module(module).CELLS) if module else {}


def result(cell, passed, reason=None):
    """One decision, as JSON (grader/results.py: CheckResult of kind "test")."""
    from grader.results import CheckResult

    return CheckResult(name=cell, cell=cell, kind="test", passed=passed, reason=reason).to_json()


def decide(folder, cell, function):
    """One cell's decision: passed, or failed with the reason (a crash of the check is a fail, with its name)."""
    if not Path(folder, "cells", cell).is_dir():
        return result(cell, False, "nothing was handed in: the test cell stopped before its end (see its error), "
                                   "or it was deleted")
    try:
        function(Handed(folder, cell))
    except Failed as failure:
        return result(cell, False, str(failure))
    except Exception as error:  # values of the wrong kind (a string where numbers belong, wrong shapes)
        return result(cell, False, f"the handed-in values are not what the test expects "
                                   f"({type(error).__name__}: {str(error)[:200]})")
    return result(cell, True)


def decide_submission(folder, assignment, cells=None):
    """Every decided cell of `assignment` (only `cells`, when given): a list of results (see result)."""
    return [decide(folder, cell, function) for cell, function in cells_of(assignment).items()
            if cells is None or cell in cells]
