"""The plots step: figures drawn from the stage journals, the model's selection validated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aisci_nb.research.llm import LLM, ScriptedProvider
from aisci_nb.research.plots import (
    STAGES,
    InvalidStageOutput,
    example_paths,
    load_stages,
    make_figures,
    run_plots,
    select_figures,
)

from .conftest import events, write_script

PNG_MAGIC = b"\x89PNG"


def example_stages():
    return load_stages({s: example_paths(s) for s in STAGES})


def test_every_figure_is_a_png_and_a_pdf_with_its_data(tmp_path: Path) -> None:
    figures = make_figures(example_stages(), tmp_path)
    assert [f.name for f in figures] == ["training_curves", "stage2_sweep", "stage4_ablations",
                                         "best_per_stage"]
    for f in figures:
        assert f.png.read_bytes()[:4] == PNG_MAGIC
        assert f.pdf.read_bytes()[:5] == b"%PDF-"
    best = figures[3].data["stages"]
    journal = json.loads(example_paths("Stage_3")[0].read_text())
    node = next(n for n in journal["nodes"] if n["id"] == journal["best_node_id"])
    assert best["Stage_3"] == {"mean": node["seeds"]["mean"], "std": node["seeds"]["std"]}
    assert figures[2].data["ablations"]["full model"] == pytest.approx(0.931)


def test_a_figure_the_data_does_not_support_is_left_out(tmp_path: Path) -> None:
    stages = [s for s in example_stages() if s.stage in ("Stage_1", "Stage_3")]
    names = [f.name for f in make_figures(stages, tmp_path)]
    assert names == ["training_curves", "best_per_stage"]


def test_a_malformed_journal_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "journal.json"
    bad.write_text(json.dumps({"stage": "Stage_1", "nodes": [{"parent_id": None}]}))
    with pytest.raises(InvalidStageOutput, match=r"journal.json: nodes.0.id: Field required"):
        load_stages({"Stage_1": (bad, example_paths("Stage_1")[1])})
    bad.write_text("{not json")
    with pytest.raises(InvalidStageOutput, match="not JSON"):
        load_stages({"Stage_1": (bad, example_paths("Stage_1")[1])})


def llm_answering(tmp_path: Path, answer: dict | str) -> LLM:
    text = answer if isinstance(answer, str) else json.dumps(answer)
    script = write_script(tmp_path / "plot.json", [{"role": "plot", "response": {"text": text}}])
    return LLM({"*": (ScriptedProvider(script), "scripted")})


def test_the_model_drops_a_figure_whose_check_fails(tmp_path: Path) -> None:
    figures = make_figures(example_stages(), tmp_path)
    llm = llm_answering(tmp_path, {"keep": ["training_curves", "stage2_sweep", "best_per_stage",
                                            "invented_figure"],
                                   "checks": [{"figure": "stage2_sweep", "ok": False,
                                               "note": "y axis unlabelled"}]})
    outcome = select_figures(llm, figures, "t")
    assert [f.name for f in outcome.kept] == ["training_curves", "best_per_stage"]
    assert outcome.dropped == {"stage2_sweep": "y axis unlabelled",
                               "stage4_ablations": "not selected"}


@pytest.mark.parametrize("answer", [{"keep": ["nothing_known"]}, "no json at all"])
def test_a_useless_answer_keeps_every_figure(tmp_path: Path, answer) -> None:
    figures = make_figures(example_stages(), tmp_path)
    outcome = select_figures(llm_answering(tmp_path, answer), figures, "t")
    assert len(outcome.kept) == 4 and outcome.notes["*"]


def test_run_plots_registers_figures_and_the_manifest(ctx, tmp_path: Path) -> None:
    from aisci_nb.research.llm.offline import scripted_llm

    manifest = run_plots(ctx, scripted_llm("default"), tmp_path / "plots", "A title")
    assert len(manifest["figures"]) == 4
    assert [r["stage"] for r in manifest["results"]] == list(STAGES)
    registered = [e["data"] for e in events(ctx, tmp_path) if e["type"] == "ai.artifact.registered"]
    kinds = [(Path(d["key"]).name, d["kind"]) for d in registered]
    assert ("training_curves.png", "figure") in kinds
    assert ("training_curves.pdf", "figure") in kinds
    assert kinds[-1] == ("figures.json", "file")
    listed = json.loads((tmp_path / ".aisci-outputs" / "Test.json").read_text())
    assert {"figures", "training_curves", "training_curves_pdf"} <= set(listed)


def test_plots_read_the_run_inputs_when_there_are_some(ctx, tmp_path: Path) -> None:
    from aisci_nb.research.plots import stage_paths

    ctx.inputs = {"Stage_1": {"journal": "/j1", "best_data": "/d1"}, "Ideation": {"x": "/y"}}
    assert stage_paths(ctx) == {"Stage_1": (Path("/j1"), Path("/d1"))}
    ctx.inputs = {"Ideation": {"x": "/y"}}
    with pytest.raises(LookupError, match="needs the journal and best_data"):
        stage_paths(ctx)
