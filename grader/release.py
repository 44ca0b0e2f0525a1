"""`python -m grader release`: what students receive, and nothing else.

Two forms, both made from the generated student notebooks (notebooks/, `make build` makes them):
  the folder  dist/<course>-student/ and its zip: the notebooks, the helper package, a student README,
              pyproject.toml, and one command to start (`make lab`, or `python start_lab.py`) with
              JupyterLab set up for a student (student/ holds those files: see student/start_lab.py)
  --exchange  nbgrader's own `release_assignment` of every assignment into an exchange folder, for
              a JupyterHub course

Never in it: source/, solutions/, grader/, any solution or hidden-test text. `leaks()` checks every
file of the folder against the masters' solution and hidden-test lines, and `build` refuses to
finish a release that has one.
"""

import json
import re
import shutil
import sys
import tomllib
from pathlib import Path

import nbformat

from grader import nbcell

# Packages only the instructor needs (grading, tests, benchmarks): not installed by students.
INSTRUCTOR_ONLY = {"dask", "distributed", "pytest", "pytest-timeout", "nbval", "playwright", "psycopg", "psycopg2-binary"}
PACKAGE = "mnistlab"  # the helper package the notebooks import
SKELETON = Path(__file__).resolve().parent.parent / "student"  # start_lab.py, Makefile, README.md, jupyter/
# nbgrader's markers around what students must never see (solutions, hidden tests, mark schemes).
SECRET_REGIONS = (("### BEGIN SOLUTION", "### END SOLUTION"), ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"),
                  ("=== BEGIN MARK SCHEME ===", "=== END MARK SCHEME ==="))
TIMES = "bench/notebook_times.json"  # measured Run All / Validate times (bench/time_notebooks.py)
HOW_LONG = "**How long.**"  # the line of each notebook's introduction that states its measured times
MIN_SECRET_LINE = 12  # shorter lines ("return x", "pass") say nothing about a solution


class LeakError(Exception):
    """The release holds text students must not see; the message names the files and lines."""


def build(course=".", to="dist", exchange=None):
    """Write <to>/<course>-student/ and <to>/<course>-student.zip; with `exchange`, release there too.

    Returns the folder. Raises LeakError (and removes the folder) if any file holds hidden text.
    """
    from grader.course import course_directory  # nbgrader's view of the course folder

    course = Path(course).resolve()
    cd, config = course_directory(course)
    course_id = cd.course_id or PACKAGE
    notebooks = course / cd.release_directory
    names = sorted(p.name for p in notebooks.iterdir() if p.is_dir() and any(p.glob("*.ipynb"))) if notebooks.is_dir() else []
    if not names:
        raise FileNotFoundError(f"no student notebooks in {notebooks}: run `make build` first")
    folder = Path(to).resolve() / f"{course_id}-student"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(SKELETON, folder)
    shutil.copytree(course / PACKAGE, folder / PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in names:
        shutil.copytree(notebooks / name, folder / "notebooks" / name,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    (folder / "pyproject.toml").write_text(student_pyproject(course / "pyproject.toml", packages(folder / PACKAGE)))
    readme = folder / "README.md"
    readme.write_text(readme.read_text().replace("RUN_TIMES", run_times_table(course / TIMES, names)))
    (folder / "jupyter" / "nbgrader_config.py").write_text(student_nbgrader_config(config, course_id))
    found = leaks(folder, course / cd.source_directory)
    if found:
        shutil.rmtree(folder)
        found.sort(key=lambda hit: "### BEGIN" not in hit and "### END" not in hit)  # nbgrader's markers say most
        raise LeakError("the release would hold hidden text, so it was not written:\n" + "\n".join(found[:20]))
    shutil.make_archive(str(folder), "zip", folder.parent, folder.name)
    if exchange:
        release_to_exchange(course, names, exchange)
    return folder


def packages(package):
    """The helper package and its subpackages (every folder with an __init__.py), as setuptools names them."""
    package = Path(package)
    found = sorted(p.parent.relative_to(package.parent) for p in package.rglob("__init__.py"))
    return [".".join(p.parts) for p in found]


def student_pyproject(instructor_pyproject, packages=(PACKAGE,)):
    """The instructor's pyproject.toml, cut down to the helper package (`packages`: it and its
    subpackages, e.g. mnistlab.diagnose) and what students need."""
    project = tomllib.loads(Path(instructor_pyproject).read_text())["project"]
    keep = [d for d in project["dependencies"] if re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0] not in INSTRUCTOR_ONLY]
    lines = "\n".join(f'    "{d}",' for d in keep)
    return f'''# The course's helper package and what the notebooks need (made by `python -m grader release`).
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{project['name']}"
version = "{project['version']}"
description = "{project['description']}"
requires-python = "{project['requires-python']}"
dependencies = [
{lines}
]

[tool.setuptools]
packages = [{", ".join(f'"{p}"' for p in packages)}]

[tool.setuptools.package-data]
{PACKAGE} = ["*.json"]
'''


def duration(seconds):
    """A waiting time as students read it: "about 40 s", "about 3 min"."""
    return f"about {round(seconds / 60)} min" if seconds >= 90 else f"about {max(10, round(seconds / 10) * 10)} s"


def how_long(times):
    """The sentence each notebook's introduction carries (bench/time_notebooks.py writes it there)."""
    return (f"{HOW_LONG} *Run All* takes {duration(times['run_all_s'])} and *Validate* "
            f"{duration(times['validate_s'])} on a {times['cores']}-core machine with the offline data.")


def run_times_table(times_file, names):
    """The student README's rows: each notebook's measured Run All and Validate times."""
    times = json.loads(Path(times_file).read_text()) if Path(times_file).exists() else {}
    rows = [f"| `{name}` | {duration(times[name]['run_all_s'])} | {duration(times[name]['validate_s'])} |"
            if name in times else f"| `{name}` | not measured | not measured |" for name in names]
    return "\n".join(rows)


def student_nbgrader_config(config, course_id):
    """nbgrader settings Validate needs on the student's machine: the course's cell time limit."""
    timeout = config.Execute.get("timeout", 30) if "Execute" in config else 30
    return f'''# nbgrader settings for Validate (made by `python -m grader release` from the course's own).
c = get_config()  # noqa: F821 (provided by nbgrader)
c.CourseDirectory.course_id = "{course_id}"
# Training cells take longer than nbgrader's default 30 s per cell.
c.Execute.timeout = {int(timeout)}
'''


def secret_regions(source):
    """(secret, public) from the masters: `secret` is a list of regions (each a list of stripped lines)
    inside solution, hidden-test and mark-scheme markers, and markdown solution cells; `public` is
    the text of everything else, which students are meant to see."""
    secret, public = [], []
    for path in sorted(Path(source).glob("*/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown" and nbcell.is_solution(cell):
                secret.append([line.strip() for line in cell.source.splitlines() if line.strip()])
                continue
            inside, region = None, []
            for line in cell.source.splitlines():
                marker = line.strip()
                if inside is None:
                    inside = next((end for begin, end in SECRET_REGIONS if marker.startswith(begin)), None)
                    if inside is None:
                        public.append(line)
                elif marker.startswith(inside):
                    inside, region = None, secret.append(region) or []
                elif marker:
                    region.append(marker)
    return secret, "\n".join(public)


def leaks(folder, source, package=None):
    """'file: text' for every piece of hidden text found in any file of the folder. Hidden text is
    a line of a secret region that appears nowhere in what students may see (the masters' public
    text, the helper package's own code), or any 3 consecutive lines of a secret region, or one of
    nbgrader's markers. (The helper package is public: a region that repeats its code is not hidden.)"""
    regions, public = secret_regions(source)
    package = Path(package) if package else Path(source).parent / PACKAGE
    public += "\n".join(p.read_text() for p in package.rglob("*.py"))
    distinctive = {line for region in regions for line in region if len(line) >= MIN_SECRET_LINE and line not in public}
    public_lines = "\n".join(line.strip() for line in public.splitlines())
    blocks = {"\n".join(region[i:i + 3]) for region in regions for i in range(len(region) - 2)}
    blocks = {block for block in blocks if block not in public_lines}
    markers = {begin for begin, _ in SECRET_REGIONS}
    found = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        text = readable_text(path)
        stripped = "\n".join(line.strip() for line in text.splitlines())
        hits = {line for line in distinctive | markers if line in text} | {b for b in blocks if b in stripped}
        found += [f"{path.relative_to(folder)}: {hit[:100]!r}" for hit in sorted(hits)]
    return found


def readable_text(path):
    """A file's text as a reader would see it: a notebook's strings unescaped (sources, outputs,
    metadata), any other file decoded as UTF-8 (bytes that are not text cannot hide a line)."""
    raw = Path(path).read_bytes()
    if path.suffix == ".ipynb":
        try:
            return "\n".join(_strings(json.loads(raw)))
        except ValueError:
            pass
    if path.suffix == ".zip":
        import io
        import zipfile

        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            return "\n".join(archive.read(name).decode("utf-8", errors="replace") for name in archive.namelist())
    return raw.decode("utf-8", errors="replace")


def _strings(value):
    """Every string inside a JSON value (a notebook's lines, outputs and metadata)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        yield "".join(value)  # a notebook stores a text as a list of its lines
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def release_to_exchange(course, names, exchange):
    """nbgrader release_assignment of every assignment into the exchange folder `exchange`."""
    from grader.build import nbgrader

    Path(exchange).mkdir(parents=True, exist_ok=True)
    for name in names:
        nbgrader(course, "release_assignment", name, "--force", f"--Exchange.root={Path(exchange).resolve()}")
    return names


def main(course=".", to="dist", exchange=None):
    """The command line's `release`: build, then say what was written."""
    folder = build(course, to, exchange)
    files = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    print(f"wrote {folder}/ ({len(files)} files) and {folder}.zip: no solutions, no hidden tests")
    if exchange:
        print(f"released to the nbgrader exchange {exchange}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
