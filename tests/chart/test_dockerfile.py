"""The Dockerfile and .dockerignore, checked without a Docker engine (none runs here).

Static checks read the Dockerfile's instructions: a pinned slim Python base, a wheel stage, a
final stage that installs only wheels without caches or compilers, a numeric non-root USER and
the operator as ENTRYPOINT. The slow test replays the two pip steps exactly as written in the
Dockerfile, on a build context filtered by .dockerignore, in clean virtualenvs, and runs the
installed console script.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.helm import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
PINNED_SLIM_PYTHON = re.compile(
    r"^python:3\.(1[1-9])\.\d+-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?$"
)
COMPILERS = ("gcc", "g++", "clang", "build-essential", "make ", "cargo", "rustc")


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped; FROM starts a stage."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        logical.append(current + line)
        current = ""
    if current:
        logical.append(current)
    instructions, stage = [], -1
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(stage, keyword, args.strip()))
    return instructions


def stage_of(instructions: list[Instruction], stage: int) -> list[Instruction]:
    return [i for i in instructions if i.stage == stage]


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    return stage_of(instructions, max(i.stage for i in instructions))


# --- static checks ---------------------------------------------------------------------------


def test_multi_stage_with_pinned_slim_python_bases(instructions: list[Instruction]) -> None:
    froms = [i.args.split() for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2, "expected a build stage and a runtime stage"
    for words in froms:
        image = words[0]
        assert PINNED_SLIM_PYTHON.match(image), f"base {image} is not a pinned slim Python"
    assert froms[0][1:3] == ["AS", "build"] or froms[0][1:3] == ["as", "build"]
    # Both stages use the same interpreter, so the wheels fit the runtime.
    assert len({words[0] for words in froms}) == 1


def test_first_stage_builds_the_wheels(instructions: list[Instruction]) -> None:
    runs = [i.args for i in stage_of(instructions, 0) if i.keyword == "RUN"]
    assert any(re.search(r"\bpip wheel\b.*--wheel-dir[ =]/wheels\b", run) for run in runs), runs


def test_final_stage_installs_only_wheels_without_cache(final_stage: list[Instruction]) -> None:
    runs = [i.args for i in final_stage if i.keyword == "RUN"]
    installs = [run for run in runs if re.search(r"\bpip install\b", run)]
    assert len(installs) == 1, installs
    install = installs[0]
    assert "--no-cache-dir" in install
    assert "--no-index" in install, "the runtime stage must not reach PyPI: wheels only"
    assert re.search(r"--find-links[ =]/wheels\b", install)
    assert "type=bind,from=build" in install, "wheels must not stay in a layer"


def test_final_stage_has_no_source_compilers_or_apt_leftovers(final_stage: list[Instruction]) -> None:
    for instruction in final_stage:
        text = instruction.args
        if instruction.keyword in ("COPY", "ADD"):
            pytest.fail(f"the runtime stage copies files ({text}); it should install wheels only")
        if instruction.keyword == "RUN":
            assert "apt-get install" not in text and "apk add" not in text, text
            for compiler in COMPILERS:
                assert compiler not in text, f"{compiler.strip()} in the runtime stage"


def test_runs_as_numeric_non_root_user(final_stage: list[Instruction]) -> None:
    users = [i.args for i in final_stage if i.keyword == "USER"]
    assert users, "no USER in the runtime stage"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
    assert match, f"USER {users[-1]} is not numeric (Kubernetes runAsNonRoot needs a number)"
    assert int(match.group(1)) != 0 and (match.group(2) is None or int(match.group(2)) != 0)


def test_user_matches_the_chart_security_context(final_stage: list[Instruction]) -> None:
    import yaml

    values = yaml.safe_load((REPO_ROOT / "charts/datasync-operator/values.yaml").read_text())
    uid = int([i.args for i in final_stage if i.keyword == "USER"][-1].split(":")[0])
    assert values["podSecurityContext"]["runAsUser"] == uid
    assert values["securityContext"]["runAsUser"] == uid


def test_entrypoint_runs_the_operator(final_stage: list[Instruction]) -> None:
    entrypoints = [i.args for i in final_stage if i.keyword == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT"
    assert json.loads(entrypoints[-1]) == ["datasync-operator", "run"]  # exec form
    assert not [i for i in final_stage if i.keyword == "CMD"]


def test_exposed_ports_match_the_chart(final_stage: list[Instruction]) -> None:
    import yaml

    values = yaml.safe_load((REPO_ROOT / "charts/datasync-operator/values.yaml").read_text())
    exposed = {int(p.split("/")[0]) for i in final_stage if i.keyword == "EXPOSE" for p in i.args.split()}
    assert exposed == {values["healthPort"], values["metrics"]["port"]}


# --- .dockerignore ---------------------------------------------------------------------------


def dockerignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        patterns.append((negated, line.lstrip("!").strip("/")))
    return patterns


def _matches(pattern: str, path: str) -> bool:
    """Docker's rule: a pattern matches the path or one of its parent folders."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for candidate in candidates:
        if fnmatch.fnmatchcase(candidate, pattern):
            return True
        if pattern.startswith("**/") and any(
            fnmatch.fnmatchcase(tail, pattern[3:])
            for tail in ("/".join(candidate.split("/")[k:]) for k in range(len(candidate.split("/"))))
        ):
            return True
    return False


def in_build_context(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` (relative, POSIX) in the context (last match wins)."""
    included = True
    for negated, pattern in dockerignore_patterns():
        if _matches(pattern, path):
            included = negated
    return included


@pytest.mark.parametrize(
    ("path", "kept"),
    [
        ("pyproject.toml", True),
        ("README.md", True),
        ("operator/datasync_operator/cli.py", True),
        ("operator/datasync_operator/py.typed", True),
        (".git/config", False),
        (".venv/bin/python", False),
        ("tests/unit/test_arn.py", False),
        ("charts/datasync-operator/values.yaml", False),
        ("operator/datasync_operator/__pycache__/cli.cpython-311.pyc", False),
        ("operator/datasync_operator.egg-info/PKG-INFO", False),
        (".mypy_cache/3.11/cache.db", False),
    ],
)
def test_dockerignore_keeps_only_the_wheel_sources(path: str, kept: bool) -> None:
    assert in_build_context(path) is kept


def test_every_copied_path_is_in_the_build_context(instructions: list[Instruction]) -> None:
    for instruction in instructions:
        if instruction.keyword != "COPY" or "--from=" in instruction.args:
            continue
        sources = [w for w in instruction.args.split() if not w.startswith("--")][:-1]
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"COPY {source}: missing"
            assert in_build_context(source), f"COPY {source}: excluded by .dockerignore"


# --- the same install steps, for real ----------------------------------------------------------


def build_context(destination: Path) -> Path:
    """Copy the repository files .dockerignore keeps (from git's view of the tree)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    for relative in listed:
        if in_build_context(relative) and (REPO_ROOT / relative).is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / relative, target)
    return destination


def dockerfile_run(stage: list[Instruction], command: str) -> str:
    """The shell of the stage's RUN line holding ``command``, without BuildKit --mount flags."""
    for instruction in stage:
        if instruction.keyword == "RUN" and command in instruction.args:
            words = instruction.args
            while words.startswith("--mount="):
                words = words.split(" ", 1)[1].lstrip()
            return words
    raise AssertionError(f"no RUN with {command!r}")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_dockerfile_install_steps_in_clean_virtualenvs(
    instructions: list[Instruction], tmp_path: Path
) -> None:
    """Stage 1's `pip wheel` and the runtime's `pip install`, as written, then run the CLI."""
    context = build_context(tmp_path / "context")
    wheels = tmp_path / "wheels"
    build_env = tmp_path / "build-venv"
    runtime_env = tmp_path / "runtime-venv"
    for venv in (build_env, runtime_env):
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)

    def shell(script: str, venv: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))},
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
        script = script.replace("/wheels", str(wheels))
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=800, check=False,
        )

    # Stage 1 (with pip's cache allowed here, to keep the test quick: the image has none).
    wheel_step = dockerfile_run(stage_of(instructions, 0), "pip wheel")
    built = shell(wheel_step, build_env, context)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    names = sorted(p.name for p in wheels.iterdir())
    assert any(n.startswith("datasync_operator-") for n in names), names
    assert not [n for n in names if not n.endswith(".whl")], "only wheels, no sdists to compile"

    # Runtime stage: only the pip install part of its RUN line (user creation needs root).
    final = stage_of(instructions, max(i.stage for i in instructions))
    install_step = dockerfile_run(final, "pip install").split("&&")[0]
    installed = shell(install_step, runtime_env, tmp_path)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]

    cli = runtime_env / "bin" / "datasync-operator"
    helped = subprocess.run([str(cli), "--help"], capture_output=True, text=True, check=False)
    assert helped.returncode == 0, helped.stderr
    assert "run" in helped.stdout
    run_help = subprocess.run([str(cli), "run", "--help"], capture_output=True, text=True, check=False)
    assert run_help.returncode == 0, run_help.stderr
    assert "DATASYNC_OPERATOR_LIVENESS_ENDPOINT" in run_help.stdout
    version = subprocess.run([str(cli), "version"], capture_output=True, text=True, check=False)
    assert version.returncode == 0 and "datasync-operator" in version.stdout
    # Only runtime dependencies: the test and lint extras stay out of the image.
    frozen = subprocess.run(
        [str(runtime_env / "bin" / "python"), "-m", "pip", "freeze"],
        capture_output=True, text=True, check=True,
    ).stdout.lower()
    for dev_only in ("pytest", "moto", "ruff", "mypy"):
        assert dev_only not in frozen, f"{dev_only} in the runtime environment"
