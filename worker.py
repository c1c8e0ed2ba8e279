"""Entry point on a pod: `python worker.py --mode experiment|ideation|hybrid`."""

from aisci_nb.worker.main import main

if __name__ == "__main__":
    raise SystemExit(main())
