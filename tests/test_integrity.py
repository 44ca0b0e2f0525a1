"""grader/integrity.py: lines a human should look at, found by reading the notebook, not running it."""

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from grader import integrity


def flags(*sources):
    cells = [new_code_cell(source) for source in sources]
    cells.append(new_code_cell("assert True", metadata={"nbgrader": {"grade": True, "grade_id": "t", "points": 1}}))
    return integrity.scan(nbformat.writes(new_notebook(cells=cells)))


def test_replaced_library_functions_are_flagged():
    found = flags("from mnistlab import train\ntrain.evaluate = lambda *a: (0, 1)", "setattr(torch, 'allclose', max)")
    assert len(found) == 2 and all("replaces a library function" in f for f in found), found


def test_reaching_into_the_kernel_is_flagged():
    found = flags("get_ipython().ast_transformers.append(T())",
                  "get_ipython().set_custom_exc((Exception,), handler)",
                  "ip = get_ipython()\nip.events.register('pre_run_cell', lambda info: ip.displayhook(1.0))",
                  "vars(train).update(evaluate=f)", "import sys\nsys.settrace(tracer)")
    assert [f.split(",")[0] for f in found] == ["cell 1", "cell 2", "cell 3", "cell 4", "cell 5"], found
    assert all("changes how the kernel runs the test cells" in f for f in found)


def test_ordinary_code_and_grade_cells_are_not_flagged():
    assert flags("model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\nhistory = train.fit(model, data)",
                 "def events(x):\n    return x.register") == []
