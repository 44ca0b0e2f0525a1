"""pyproject.toml and environment.yml install the same packages, and this environment has them."""

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def pyproject_requirements():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["dependencies"]


def conda_pip_section():
    spec = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = [entry["pip"] for entry in spec["dependencies"] if isinstance(entry, dict) and "pip" in entry]
    assert len(pip) == 1, "environment.yml needs exactly one `- pip:` list under dependencies"
    return pip[0]


def normalized(requirements):
    """{name: version spec}, with names compared the way pip compares them."""
    result = {}
    for line in requirements:
        requirement = Requirement(line)
        name = requirement.name.lower().replace("_", "-").replace(".", "-")
        assert name not in result, f"{name} is listed twice"
        result[name] = str(requirement.specifier)
    return result


def test_pyproject_and_environment_yml_list_the_same_packages():
    pip = conda_pip_section()
    assert "-e ." in pip, "environment.yml should install this package itself with `-e .`"
    packages = [line for line in pip if not line.startswith("-")]
    conda, project = normalized(packages), normalized(pyproject_requirements())
    assert len(project) > 10
    assert sorted(set(project) - set(conda)) == [], "in pyproject.toml but not in environment.yml"
    assert sorted(set(conda) - set(project)) == [], "in environment.yml but not in pyproject.toml"
    differ = {name: (project[name], conda[name]) for name in project if project[name] != conda[name]}
    assert differ == {}, "version specs differ (pyproject.toml, environment.yml)"


def test_environment_yml_brings_python_and_pip():
    spec = yaml.safe_load((ROOT / "environment.yml").read_text())
    plain = [entry for entry in spec["dependencies"] if isinstance(entry, str)]
    assert "pip" in plain and any(entry.startswith("python") for entry in plain)


@pytest.mark.parametrize("line", pyproject_requirements())
def test_this_environment_satisfies_each_requirement(line):
    requirement = Requirement(line)
    try:
        installed = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{requirement.name} is not installed: run `pip install -e .`")
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"{requirement.name} {installed} is installed but pyproject.toml asks for {requirement.specifier}"
    )


def test_missing_system_packages_stop_at_once_with_the_exact_command():
    """Not root (or no apt-get): .ci/system-packages installs nothing and prints the command to run."""
    import shutil
    import subprocess

    if not shutil.which("dpkg-query") or not shutil.which("setpriv"):
        pytest.skip("needs dpkg-query and setpriv (Debian)")
    # The script is read through stdin, so the unprivileged user need not be able to open the checkout.
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-s", "--",
                           "coreutils", "mnistlab-no-such-package"], capture_output=True, text=True, timeout=60,
                          input=(ROOT / ".ci" / "system-packages").read_text(), cwd="/")
    assert done.returncode == 1
    assert "Run:  sudo apt-get install -y mnistlab-no-such-package\n" in done.stderr  # coreutils is installed
    assert "installing" not in done.stdout


def test_makefile_and_ci_share_one_package_list():
    """The system packages are listed once, in the Makefile; .ci/run only runs `make test`."""
    makefile = (ROOT / "Makefile").read_text()
    assert "SYSTEM_PACKAGES :=" in makefile and "system-packages $(SYSTEM_PACKAGES)" in makefile
    assert "apt-get" not in (ROOT / ".ci" / "run").read_text()
    test_rule = next(line for line in makefile.splitlines() if line.startswith("test:"))
    assert test_rule.split(":")[1].split()[0] == "system", "test must check the system packages before the venv"


def test_the_system_packages_bring_every_pinned_letter_font():
    from mnistlab import letter_fonts

    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = next(line for line in makefile.splitlines() if line.startswith("LETTER_FONTS :="))
    assert set(line.split(":=")[1].split()) == set(letter_fonts.DEBIAN_PACKAGES)
