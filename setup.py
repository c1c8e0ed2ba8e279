"""Build hook: ship the top-level `notebooks/` inside the wheel as `aisci_nb/_notebooks/`.

The step notebooks stay where the design card puts them (top level), and a non-editable
install (`pip install aisci[...]` on a pod image) still finds them
(`aisci_nb.worker.pipelines.notebooks_dir`). Everything else is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithNotebooks(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # an editable install reads them from the checkout
        target = Path(self.build_lib) / "aisci_nb" / "_notebooks"
        shutil.rmtree(target, ignore_errors=True)
        for nb in sorted((ROOT / "notebooks").rglob("*.ipynb")):
            if ".ipynb_checkpoints" in nb.parts:
                continue
            dest = target / nb.relative_to(ROOT / "notebooks")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(nb, dest)


setup(cmdclass={"build_py": BuildPyWithNotebooks})
