"""Small helpers the course notebooks share."""


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
    import os

    return bool(os.environ.get("NBGRADER_EXECUTION"))
