"""Hand a trained model in for grading, in a form the grader can load without running your code.

Why: nbgrader runs the tests inside your own notebook's Python, so anything there (a redefined
`evaluate`, a patched check) could change what the tests see. The course's grader therefore
re-measures every accuracy threshold itself, in a separate, clean process, on its own copy of the
test data. For that it needs your trained model as *data*, not as Python code:

- `torch.export` traces the model's forward pass into a graph of PyTorch operations (aten ops);
- the graph is saved as JSON (`<name>.graph.json`) and the weights as plain arrays (`<name>.weights.npz`).

The grader loads these files without unpickling anything and refuses any graph that calls
something other than PyTorch's tensor operations (that loader is the grader's, not part of this
package). The graph is traced for a fixed batch size (`BATCH`); the grader feeds it chunks of that
size, so any number of images works.

What cannot be exported: a forward pass that leaves PyTorch (NumPy, `.item()`, `.tolist()`), or
whose Python `if`s depend on the data. `export` then raises `CannotExport`, saying what to change.
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

BATCH = 64  # the graph's batch size: inputs are [BATCH, ...]; the grader pads and chunks around it


class CannotExport(Exception):
    """The model could not be turned into a graph of tensor operations; the message says why and what to do."""


class _Function(nn.Module):
    """Wrap a plain function (e.g. an augmentation) as a module, so torch.export can trace it."""

    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)


def export(model, example):
    """Trace `model` (an nn.Module or a function of a batch) on `example`, a batch of inputs [N, C, H, W].

    Returns a torch.export.ExportedProgram of a CPU copy of the model in eval mode, for batches
    of BATCH images. Raises CannotExport with the reason when the forward pass cannot be traced.
    """
    import copy

    if isinstance(model, nn.Module):
        module = copy.deepcopy(model).cpu().eval()  # your model keeps its device and train/eval mode
    elif callable(model):
        module = _Function(model)
    else:
        raise TypeError(f"hand in an nn.Module or a function of a batch, got {type(model).__name__}")
    example = torch.as_tensor(example).detach().cpu()
    example = example[torch.arange(BATCH) % len(example)]  # BATCH images (repeated if fewer)
    try:
        with torch.no_grad():
            return torch.export.export(module, (example,))
    except Exception as error:  # torch.export raises many kinds; they all mean "cannot trace this"
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise CannotExport(
            f"the grader cannot export this model with torch.export ({type(error).__name__}: {first_line}). "
            "Keep the forward pass in PyTorch: no NumPy, .item() or .tolist(), and no Python `if` on the "
            "values of a tensor (use torch.where instead).") from None


def save(exported, folder, name):
    """Write an ExportedProgram as `<name>.graph.json` + `<name>.weights.npz` into `folder`."""
    from torch._export.serde.serialize import serialize

    artifact = serialize(exported)
    tensors = {**{f"param:{k}": v for k, v in exported.state_dict.items()},
               **{f"const:{k}": v for k, v in exported.constants.items() if isinstance(v, torch.Tensor)}}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    Path(folder, f"{name}.graph.json").write_bytes(artifact.exported_program)
    with open(Path(folder, f"{name}.weights.npz"), "wb") as handle:
        np.savez(handle, **{k: v.detach().cpu().numpy() for k, v in tensors.items()})
