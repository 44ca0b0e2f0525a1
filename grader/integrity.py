"""Integrity checks that read the submission, not run it: what a notebook does to the tests' tools.

nbgrader's tests run in the student's kernel, so a notebook can replace the functions they call
(`train.evaluate = ...`, `setattr(thresholds, "threshold", ...)`, `torch.allclose = ...`). The accuracy
checks do not care (grader/clean.py re-measures them outside the kernel), but other tests could be
fooled, so the grader flags such lines for a human to look at. It does not change a score: replacing a
library function can be innocent (a student experimenting), and the instructor decides.

Also flagged: lines that change how the kernel runs the test cells (IPython's AST transformers, a custom
exception handler, its display hook or event hooks, a tracer, `vars(module).update`). Those cannot earn a
point any more (grader/decide decides every test cell outside the kernel), but they are a reason to look.
"""

import ast

import nbformat

from grader import nbcell

# Names a notebook of this course imports modules as; anything imported as a module is added per notebook.
MODULES = {"torch", "nn", "F", "np", "numpy", "train", "data", "thresholds", "course", "plots", "handin",
           "diagnose", "builtins", "math", "statistics", "sys", "os", "mnistlab", "nbgrader", "importlib"}


def module_names(tree):
    """Names bound by `import x`, `import x as y` and `from package import module` in one cell."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("mnistlab", "torch"):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def root_name(node):
    """`a` for a.b.c (and a[0].b): the name an attribute chain starts from, else None."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def patches(source, modules):
    """(line, text) of each statement in `source` that replaces an attribute of a module."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics and the like: nothing we can read
        return []
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and root_name(target) in modules:
                found.append(node)
            if isinstance(target, ast.Subscript) and ast.unparse(target.value) in ("sys.modules", "__builtins__", "globals()"):
                found.append(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
            if node.args and root_name(node.args[0]) in modules:
                found.append(node)
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("importlib.reload", "reload"):
            found.append(node)
    return sorted({(n.lineno, ast.unparse(n).splitlines()[0][:120]) for n in found})


# Attributes and functions through which a notebook changes how its kernel runs the cells after it.
KERNEL_HOOKS = {"ast_transformers", "input_transformers_post", "input_transformers_cleanup", "set_custom_exc",
                "displayhook", "display_pub", "events", "settrace", "setprofile", "excepthook", "showtraceback",
                "run_cell", "run_cell_async", "ast_node_interactivity"}


def hooks(source):
    """(line, text) of each statement that reaches into the kernel's machinery (KERNEL_HOOKS, vars(x).update)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = set()
    for statement in [n for n in ast.walk(tree) if isinstance(n, ast.stmt) and not isinstance(n, (ast.FunctionDef, ast.ClassDef))]:
        for node in ast.walk(statement):
            hooked = isinstance(node, ast.Attribute) and node.attr in KERNEL_HOOKS
            dict_update = (isinstance(node, ast.Attribute) and node.attr in ("update", "__setitem__", "setdefault")
                           and (isinstance(node.value, ast.Call) and ast.unparse(node.value.func) == "vars"
                                or isinstance(node.value, ast.Attribute) and node.value.attr == "__dict__"))
            if hooked or dict_update:
                found.add((statement.lineno, ast.unparse(statement).splitlines()[0][:120]))
    return sorted(found)


def scan(notebook_text):
    """Flags (strings) for the student's cells of one notebook (grade cells are nbgrader's: skipped)."""
    try:
        nb = nbformat.reads(notebook_text, as_version=4)
    except Exception:
        return []  # a notebook nbgrader cannot read either: it gets its own reason
    sources = [(i, cell.source) for i, cell in enumerate(nb.cells)
               if cell.cell_type == "code" and not nbcell.is_grade(cell)]
    modules = set(MODULES)
    for _, source in sources:
        try:
            modules |= module_names(ast.parse(source))
        except SyntaxError:
            pass
    flags = []
    for index, source in sources:
        for line, text in patches(source, modules):
            flags.append(f"cell {index + 1}, line {line}: `{text}` replaces a library function the tests use")
        for line, text in hooks(source):
            flags.append(f"cell {index + 1}, line {line}: `{text}` changes how the kernel runs the test cells")
    return flags
