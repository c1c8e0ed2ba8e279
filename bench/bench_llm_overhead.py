"""The LLM layer's overhead per call, against a bare SDK call to the same local server.

Both sides call the same local OpenAI-format server (`tests/llm_server.py`) through the
same `openai` SDK: the baseline calls `chat.completions.create` directly; the layer goes
through `LLM.chat` as a notebook does (routing, request translation, our retry wrapper,
pricing with genai-prices, an `ai.llm.usage` event through the real emitter and spool, the
budget ledger written to disk). Calls alternate so both see the same machine. Printed:
medians per call and their ratio (layer / bare).

    python bench/bench_llm_overhead.py [--calls 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import openai
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.llm_server

from aisci_nb.events.emitter import Emitter, RunEmitter, SequenceCounter
from aisci_nb.events.spool import Spool
from aisci_nb.research.llm import Message
from aisci_nb.research.llm.ledger import Budget, Ledger
from aisci_nb.research.llm.routing import build_llm
from aisci_nb.research.llm.usage import UsageMeter
from aisci_nb.settings import LLMSettings
from tests.llm_server import KEY, llm_server


class NullSink:
    def send(self, lines: list[bytes]) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args()
    with llm_server() as (url, _), tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = LLMSettings(_env_file=None, llm_model="openai-compatible:gpt-5-mini",
                               llm_base_url=f"{url}/v1", llm_api_key=KEY)
        events = RunEmitter(Emitter(NullSink(), source="bench://pod", spool=Spool(root / "s")),
                            "r1", sequence=SequenceCounter(root / "events.seq"))
        meter = UsageMeter(events.emit, "Stage_1", ledger=Ledger(root / "ledger.json"),
                           budget=Budget(run_usd=1e9))
        llm = build_llm(settings, observer=meter.observe, guard=meter.guard)
        bare = openai.OpenAI(api_key=KEY, base_url=f"{url}/v1", max_retries=0, timeout=30)
        messages = [Message("system", "Be brief."), Message("user", "hello")]
        wire = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]

        def layer_call() -> None:
            llm.chat("ideation", messages, max_tokens=64)

        def bare_call() -> None:
            bare.chat.completions.create(model="gpt-5-mini", messages=wire,
                                         max_completion_tokens=64)

        for _ in range(20):  # warm both (connections, genai-prices' data, imports)
            layer_call()
            bare_call()
        base: list[float] = []
        ours: list[float] = []
        for _ in tqdm(range(args.calls), desc="calls", leave=False):
            for fn, out in ((bare_call, base), (layer_call, ours)):
                t = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t)
        events.emitter.close(timeout_s=1)
    b, o = statistics.median(base), statistics.median(ours)
    print(f"LLM call to a local server, median of {args.calls}: bare SDK {b * 1e3:.3f} ms, "
          f"through the layer {o * 1e3:.3f} ms (+{(o - b) * 1e3:.3f} ms per call)")
    print(f"ratio layer / bare SDK: {o / b:.2f}x")


if __name__ == "__main__":
    main()
