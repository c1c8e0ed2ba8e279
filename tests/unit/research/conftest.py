"""Helpers for the research unit tests: a real run context writing to a local debug sink,
scripted LLMs, and the poppler tools to look at PDFs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import aisci_nb
from aisci_nb.research.llm import LLM, ScriptedProvider

OUTPUT = Path(__file__).resolve().parents[2] / "output"  # tests/output (git-ignored)
needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("pdfinfo") is None,
                               reason="TeX/poppler not installed (scripts/system-deps.sh)")


def scripted(*names: str) -> LLM:
    """Roles answered by the first script; `default` for everything else."""
    providers = {"*": (ScriptedProvider("default"), "scripted")}
    if names:
        providers = {"*": (ScriptedProvider(names[0]), "scripted")}
    return LLM(providers)


def write_script(path: Path, entries: list[dict]) -> Path:
    path.write_text(json.dumps({"entries": entries}))
    return path


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A real RunContext with no control plane: events in aisci-debug-events.ndjson and
    artifacts in aisci-debug-artifacts/, under a temporary working directory."""
    monkeypatch.chdir(tmp_path)
    context = aisci_nb.init(None, stage="Test")
    yield context
    context.close(timeout_s=1)


def events(ctx, cwd: Path) -> list[dict]:
    """What the context emitted, once its sender has delivered everything."""
    assert ctx.events.emitter.flush(timeout_s=10)
    path = cwd / "aisci-debug-events.ndjson"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def poppler(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True,
                          env={**os.environ, "LC_ALL": "C"}).stdout


@pytest.fixture(scope="session")
def example_paper(tmp_path_factory: pytest.TempPathFactory):
    """The paper of the packaged example stages on the default script, built once."""
    from aisci_nb.contract.idea import example_idea
    from aisci_nb.research.llm.offline import scripted_llm
    from aisci_nb.research.writeup import RecordedSearch, build_paper, example_manifest

    manifest = example_manifest(tmp_path_factory.mktemp("figures"))
    return build_paper(scripted_llm("default"), example_idea(), json.loads(manifest.read_text()),
                       manifest.parent, tmp_path_factory.mktemp("paper") / "latex",
                       RecordedSearch(), page_limit=8)
