"""What a call cost in US dollars: the `genai-prices` library (a maintained price list of
the providers' models) with a local override file for models it lacks or prices that
differ (a negotiated rate, a self-hosted model).

The override file (`LLM_PRICES_FILE`, YAML or JSON) gives dollars per million tokens:

    gpt-5-mini: {input: 0.25, output: 2.0, cached_input: 0.025}
    qwen2.5-coder-32b: {input: 0, output: 0}

A model priced nowhere costs 0 and is logged once: a local model is free, a new one must
not stop the research.
"""

from __future__ import annotations

import functools
import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

from .errors import LLMConfigError
from .types import Usage

log = logging.getLogger("aisci.llm")
MTOK = 1_000_000
GENAI_PROVIDERS = {"openai": "openai", "anthropic": "anthropic"}


@functools.cache
def load_overrides(path: Path | None) -> dict[str, dict[str, float]]:
    """The override file as {model: {input, output, cached_input}}; refused when malformed."""
    if path is None:
        return {}
    try:
        text = Path(path).read_text()
        if Path(path).suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as exc:
        raise LLMConfigError(f"LLM_PRICES_FILE {path}: cannot read it ({exc})") from None
    if not isinstance(data, dict):
        raise LLMConfigError(f"LLM_PRICES_FILE {path}: expected a mapping of model to prices")
    prices: dict[str, dict[str, float]] = {}
    for model, entry in data.items():
        if not isinstance(entry, dict) or not {"input", "output"} <= entry.keys():
            raise LLMConfigError(f"LLM_PRICES_FILE {path}: {model!r} needs input and output "
                                 "($ per million tokens)")
        try:
            prices[str(model)] = {k: float(entry[k]) for k in ("input", "output", "cached_input")
                                  if k in entry}
        except (TypeError, ValueError):
            raise LLMConfigError(f"LLM_PRICES_FILE {path}: {model!r} has a price that is not "
                                 "a number") from None
    return prices


def _from_override(entry: dict[str, float], usage: Usage) -> float:
    cached = min(usage.cached_tokens, usage.input_tokens)
    cached_rate = entry.get("cached_input", entry["input"])
    return ((usage.input_tokens - cached) * entry["input"] + cached * cached_rate
            + usage.output_tokens * entry["output"]) / MTOK


@functools.cache
def _warn_unpriced(model: str) -> None:
    log.warning("no price for LLM model %r (genai-prices nor LLM_PRICES_FILE): counted as $0",
                model)


def _from_library(model: str, provider: str | None, usage: Usage) -> Decimal | None:
    from genai_prices import Usage as PriceUsage
    from genai_prices import calc_price

    priced = PriceUsage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                        cache_read_tokens=min(usage.cached_tokens, usage.input_tokens) or None)
    kwargs: dict[str, Any] = {}
    if provider in GENAI_PROVIDERS:
        kwargs["provider_id"] = GENAI_PROVIDERS[provider]
    try:
        return calc_price(priced, model_ref=model, **kwargs).total_price
    except LookupError:
        if kwargs:  # a model some other provider also serves
            try:
                return calc_price(priced, model_ref=model).total_price
            except LookupError:
                return None
        return None


def cost_usd(model: str, usage: Usage, *, provider: str | None = None,
             overrides: Path | None = None) -> tuple[float, bool]:
    """(dollars, whether a price was found) for one call's usage of `model`."""
    if model == "scripted":  # a recording that claims no model costs nothing
        return 0.0, True
    table = load_overrides(overrides)
    entry = table.get(model) or table.get(model.rsplit("/", 1)[-1])
    if entry is not None:
        return _from_override(entry, usage), True
    price = _from_library(model, provider, usage)
    if price is None:
        _warn_unpriced(model)
        return 0.0, False
    return float(price), True
