"""aisci: automated research on GPU pods.

Inside a step notebook, `aisci_nb.init(...)` turns the injected parameters into a
`RunContext` that reports progress, metrics and logs as CloudEvents. The rest of the
package (queue, worker, control plane, CLI) lives in submodules and is not imported here,
so the kernel stays light.
"""

from .notebook.context import RunContext, init

__all__ = ["RunContext", "init"]
__version__ = "0.1.0"
