"""aisci: automated research on GPU pods.

Inside a step notebook, `ctx = aisci_nb.init(aisci, stage=stage)` turns the injected run
info into a `RunContext` that reports progress, metrics and logs as CloudEvents. The rest
of the package (queue, worker, control plane, CLI) lives in subpackages and is not imported
here, so the kernel stays light.
"""

from .notebook.bootstrap import init
from .notebook.context import RunContext

__all__ = ["RunContext", "init"]
__version__ = "0.1.0"
