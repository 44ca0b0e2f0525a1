"""Load a model a student handed in (mnistlab/handin.py wrote it), safely, in the grader's clean process.

A hand-in is `<name>.graph.json` (a torch.export graph) + `<name>.weights.npz` (plain arrays). The
files come from a student's kernel, so they are untrusted: `torch.export.load` itself would unpickle
with weights_only=False, compile `guards_code` as Python and resolve any `torch.*` name. So this
loader never unpickles, refuses any graph target that is not an aten tensor operation (or getitem),
refuses symbolic expressions and custom objects, and drops `guards_code`.

Students never receive this module (see grader/release.py); they only export and save.
"""

import json
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

# A graph node may only call PyTorch tensor operations (torch.ops.aten.*) and pick an item of a tuple.
ALLOWED_TARGET = re.compile(r"^(torch\.ops\.aten\.[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)?|_operator\.getitem)$")
# aten operations that touch the outside world (files, printing) are refused even so.
REFUSED_OPS = ("from_file", "_print", "save", "_foreach_print")


class UnsafeArtifact(Exception):
    """A handed-in file is not a plain graph of PyTorch operations plus arrays of numbers."""


def check_graph(graph_json):
    """Raise UnsafeArtifact unless the graph only calls allowed tensor operations, with fixed shapes."""
    problems = []

    def walk(value):
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "target" and isinstance(item, str):
                    op = item.split(".")[3] if item.startswith("torch.ops.aten.") and item.count(".") >= 3 else ""
                    if not ALLOWED_TARGET.match(item) or op in REFUSED_OPS:
                        problems.append(f"calls {item[:80]}")
                elif key in ("as_expr", "as_custom_obj", "as_custom_objs") and item:
                    problems.append(f"holds a {key} entry")
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(graph_json)
    if problems:
        raise UnsafeArtifact("refused: the graph " + "; ".join(sorted(set(problems))[:5]))


def load(folder, name):
    """Load a handed-in model as a function of a batch of any size (see the module docstring).

    Safe on untrusted files: the graph is checked first, and the weights are read with NumPy without pickle.
    """
    from torch._export.serde.serialize import SerializedArtifact, deserialize

    folder = Path(folder)
    graph_file, weights_file = Path(folder, f"{name}.graph.json"), Path(folder, f"{name}.weights.npz")
    if not graph_file.exists() or not weights_file.exists():
        raise FileNotFoundError(f"no handed-in model {name!r} in {folder}")
    graph_bytes = graph_file.read_bytes()
    try:
        graph = json.loads(graph_bytes)
    except ValueError as error:
        raise UnsafeArtifact(f"{graph_file.name} is not JSON: {error}") from None
    check_graph(graph)
    graph["guards_code"] = []  # Python source torch would compile into shape checks: never run it
    graph_bytes = json.dumps(graph).encode()
    try:
        with np.load(weights_file, allow_pickle=False) as arrays:
            tensors = {k: torch.from_numpy(arrays[k].copy()) for k in arrays.files}
    except (ValueError, OSError) as error:
        raise UnsafeArtifact(f"{weights_file.name} is not a plain array file: {error}") from None
    params = {k.split(":", 1)[1]: v for k, v in tensors.items() if k.startswith("param:")}
    params = {k: nn.Parameter(v, requires_grad=False) if k in _parameter_names(graph) else v for k, v in params.items()}
    constants = {k.split(":", 1)[1]: v for k, v in tensors.items() if k.startswith("const:")}
    try:
        program = deserialize(SerializedArtifact(graph_bytes, params, constants, ((), {})))
        program.example_inputs = ((torch.zeros(_input_shape(program)),), {})  # only its structure is used
        module = program.module()
    except Exception as error:
        raise UnsafeArtifact(f"cannot rebuild the graph: {type(error).__name__}: {str(error)[:200]}") from None
    batch = _input_shape(program)[0]

    def run(x):
        """module on a batch of any size: chunks of `batch` rows, the last one padded and cut."""
        outputs = []
        for start in range(0, len(x), batch):
            chunk = x[start:start + batch]
            padded = chunk[torch.arange(batch) % len(chunk)]
            outputs.append(module(padded)[:len(chunk)])
        return torch.cat(outputs)

    return run


def operations(folder, name):
    """The aten operations a handed-in graph calls, in order, without their overload: e.g. ["flatten",
    "linear", "relu"] (structural checks read these, never the student's live model)."""
    graph = json.loads(Path(folder, f"{name}.graph.json").read_bytes())
    check_graph(graph)
    targets = [node.get("target", "") for node in graph.get("graph_module", {}).get("graph", {}).get("nodes", [])]
    return [t.split(".")[3] for t in targets if t.startswith("torch.ops.aten.") and t.count(".") >= 3]


def _parameter_names(graph):
    """Names of the state-dict entries the graph declares as parameters (the others are buffers)."""
    specs = graph.get("graph_module", {}).get("signature", {}).get("input_specs", [])
    return {spec["parameter"]["parameter_name"] for spec in specs if "parameter" in spec}


def _input_shape(program):
    """The fixed shape of the graph's one input, e.g. [BATCH, 1, 28, 28]."""
    if len(program.graph_signature.user_inputs) != 1:
        raise UnsafeArtifact("the graph must take exactly one input, a batch of images")
    name = program.graph_signature.user_inputs[0]
    node = next(n for n in program.graph.nodes if n.name == name)
    return [int(size) for size in node.meta["val"].shape]

