"""Regenerate the recorded (scripted) LLM answers of the Plots, Writeup and Review steps.

The answers hold LaTeX inside JSON inside JSON; writing them from Python keeps the escaping
right. Run from the repository root: python scripts/dev/make_paper_scripts.py
"""

from __future__ import annotations

import json
from pathlib import Path

SCRIPTS = Path("aisci_nb/research/llm/scripts")


def entry(role: str, match: str | None, answer: object, *, repeat: bool = True,
          usage: tuple[int, int] = (900, 400)) -> dict:
    e = {"role": role, "model": "scripted",
         "response": {"text": answer if isinstance(answer, str) else json.dumps(answer)},
         "usage": {"input_tokens": usage[0], "output_tokens": usage[1]}}
    if match:
        e["match"] = match
    if repeat:
        e["repeat"] = True
    return e


def write(path: Path, entries: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"entries": entries}, indent=1) + "\n")


PLOTS = entry("plot", "Select and check the figures", {
    "keep": ["training_curves", "stage2_sweep", "stage4_ablations", "best_per_stage"],
    "checks": [
        {"figure": "training_curves", "ok": True, "note": "losses fall and flatten in every stage"},
        {"figure": "stage2_sweep", "ok": True, "note": "log-scaled learning rate; clear optimum"},
        {"figure": "stage4_ablations", "ok": True, "note": "full model first, variants below"},
        {"figure": "best_per_stage", "ok": True, "note": "error bars are the seed std"}]})

CITATIONS = entry("citations", "Find related work", {"queries": [
    "two moons MLP width", "label noise neural network generalization",
    "mixup data augmentation", "automated scientific discovery language models"]})

SECTIONS = [
    ("Introduction",
     "How wide must a small network be before extra capacity stops paying off? Classical "
     "intuition says a wider model overfits noisy labels, while modern results on "
     "over-parameterised networks suggest that width keeps helping "
     "\\cite{nakkiran2020deep,zhang2017understanding}. We study this question on a deliberately "
     "small problem, the two-moons data set with label noise, where every experiment runs in "
     "seconds and can be repeated over seeds. The study was carried out end to end by an "
     "automated research pipeline \\cite{lu2024scientist}: an initial implementation, a tuned "
     "baseline, a creative extension and ablations, each chosen by a tree search over "
     "candidate programs."),
    ("Related Work",
     "Memorisation of noisy labels by deep networks is well documented "
     "\\cite{arpit2017closer,zhang2017understanding}, and double descent shows that test error "
     "can fall again as capacity grows past the interpolation threshold "
     "\\cite{nakkiran2020deep}. Mixup regularises by training on convex combinations of "
     "examples \\cite{zhang2018mixup}. We train with gradient descent and Adam "
     "\\cite{kingma2015adam}."),
    ("Method",
     "The model is a multi-layer perceptron with one hidden layer of variable width and ReLU "
     "activations, trained with cross-entropy on two-moons samples whose labels are flipped "
     "with a fixed probability. Stage 1 implements the baseline; stage 2 sweeps the learning "
     "rate and the width; stage 3 adds mixup on the inputs; stage 4 removes one component at a "
     "time. Each stage keeps the best node of its search and repeats it over several seeds."),
    ("Experiments",
     "Figure~\\ref{fig:training_curves} shows the training and validation loss of the best "
     "node of each stage: all converge within the epoch budget, and the gap between the two "
     "curves stays small. The sweep of Figure~\\ref{fig:stage2_sweep} shows a clear optimum "
     "of the learning rate and a plateau in width: beyond a moderate width, accuracy no "
     "longer improves. Table~\\ref{tab:results} and Figure~\\ref{fig:best_per_stage} compare "
     "the stages over seeds, and the ablations of Figure~\\ref{fig:stage4_ablations} show "
     "which components the final model relies on most."),
    ("Limitations",
     "The data set is synthetic and two-dimensional; the conclusions about width may not "
     "transfer to high-dimensional data. Few seeds were run per configuration, so small "
     "differences between stages are within noise."),
    ("Conclusion",
     "On noisy two-moons, width helps a small MLP up to a moderate size and then plateaus; "
     "tuning the learning rate matters more than width, and input normalisation is the "
     "component the model depends on most."),
]
DRAFT = {"title": "Width Versus Label Noise in Small MLPs: An Automated Study on Two-Moons",
         "abstract": "We ask whether a wider hidden layer helps a small multi-layer perceptron "
                     "on the two-moons data set with noisy labels. An automated research "
                     "pipeline implemented, tuned, extended and ablated the model in four "
                     "stages. Accuracy rises with width up to a moderate size and then "
                     "plateaus; the learning rate matters more, and input normalisation is "
                     "the most important component.",
         "sections": [{"heading": h, "body": b} for h, b in SECTIONS]}
WRITEUP = entry("writeup", "Write the paper for this research idea", DRAFT)

REVIEW = {
    "Summary": "The paper studies how the hidden width of a one-layer MLP affects validation "
               "accuracy on two-moons with label noise, using a four-stage automated "
               "pipeline (baseline, tuning, mixup extension, ablations).",
    "Strengths": ["Clear question and a fully reproducible setting.",
                  "Results are reported over seeds with a sweep and ablations."],
    "Weaknesses": ["A single synthetic two-dimensional data set.",
                   "Few seeds; the differences between the later stages are small."],
    "Originality": 2, "Quality": 3, "Clarity": 3, "Significance": 2,
    "Questions": ["Does the width plateau move with the noise level?"],
    "Limitations": ["Synthetic data only, acknowledged by the authors."],
    "Ethical Concerns": False,
    "Soundness": 3, "Presentation": 3, "Contribution": 2, "Overall": 5, "Confidence": 3,
    "Decision": "Accept"}
REVIEWS = entry("review", "Review the paper", REVIEW)


def main() -> None:
    write(SCRIPTS / "default" / "plots.json", [PLOTS])
    write(SCRIPTS / "default" / "writeup.json", [CITATIONS, WRITEUP])
    write(SCRIPTS / "default" / "review.json", [REVIEWS])
    # Test scenarios. latex_fix: the draft has an undefined control sequence; the fix removes
    # it. latex_unfixable: the fix's edit does not touch the error, every round.
    broken = json.loads(json.dumps(DRAFT))
    broken["sections"][2]["body"] += " The loss is \\lossfn{x}."
    draft = entry("writeup", "Write the paper for this research idea", broken)
    fix = entry("writeup", "Fix the LaTeX error", {"edits": [
        {"find": " The loss is \\lossfn{x}.", "replace": " The loss is cross-entropy."}]})
    write(SCRIPTS / "latex_fix.json", [CITATIONS, draft, fix])
    nofix = entry("writeup", "Fix the LaTeX error", {"edits": [
        {"find": "The model is a", "replace": "The model is a"}]})
    write(SCRIPTS / "latex_unfixable.json", [CITATIONS, draft, nofix])
    # review_ensemble: three reviewers, then the meta-review; review_invalid: out of range.
    ensemble = []
    for overall, decision in ((6, "Accept"), (4, "Reject"), (5, "Accept")):
        ensemble.append(entry("review", "Review the paper", {**REVIEW, "Overall": overall,
                                                             "Decision": decision},
                              repeat=False))
    meta = {**REVIEW, "Summary": "Meta-review: " + REVIEW["Summary"], "Overall": 5,
            "Decision": "Accept"}
    ensemble.append(entry("review", "Write the meta-review", meta))
    write(SCRIPTS / "review_ensemble.json", ensemble)
    write(SCRIPTS / "review_invalid.json",
          [entry("review", "Review the paper", {**REVIEW, "Overall": 14})])


if __name__ == "__main__":
    main()
