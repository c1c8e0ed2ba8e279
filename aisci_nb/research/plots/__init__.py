"""The paper's figures from the stages' results (the Plots step)."""

from .figures import Figure, make_figures
from .inputs import STAGES, InvalidStageOutput, StageResult, example_paths, load_stages
from .select import Outcome, select_figures
from .step import MANIFEST, run_plots, stage_paths

__all__ = ["MANIFEST", "STAGES", "Figure", "InvalidStageOutput", "Outcome", "StageResult",
           "example_paths", "load_stages", "make_figures", "run_plots", "select_figures",
           "stage_paths"]
