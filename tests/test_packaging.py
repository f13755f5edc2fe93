"""Pins agree everywhere, and CI runs exactly the README's test command."""

import re
import tomllib

import yaml

from brainot.config import REPO


def pyproject_pins():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        name, sep, version = dep.partition("==")
        assert sep, f"pyproject.toml: dependency {dep!r} is not pinned with =="
        pins[name.lower()] = version
    return pins


def test_every_dependency_is_pinned_and_torch_is_the_cpu_file_version():
    pins = pyproject_pins()
    assert pins["torch"] == "2.13.0"
    assert pins["transformers"].startswith("5.") and pins["snakemake"].startswith("9.")
    assert "torchvision" not in pins


def test_conda_environments_match_pyproject():
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs, "no conda environment under envs/"
    pins = pyproject_pins()
    for path in envs:
        spec = yaml.safe_load(path.read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
        env_pins = dict(p.lower().split("==") for p in pip)
        assert env_pins == pins, f"{path.name} differs from pyproject.toml"
        python = next(d for d in spec["dependencies"] if isinstance(d, str) and d.startswith("python="))
        assert python == "python=3.11"


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"^```(?:bash|sh)\n(.*?)\n```", readme, flags=re.S | re.M)
    test_cmd = [c for c in commands if "test" in c]
    assert len(test_cmd) == 1, "the README must show exactly one test command block"
    ci = (REPO / ".ci" / "run").read_text()
    assert test_cmd[0].strip() in ci
