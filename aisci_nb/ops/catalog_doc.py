"""`docs/events.md`, generated from the catalogue: `python -m aisci_nb.ops.catalog_doc --write`.

CI fails when the committed file differs from what the catalogue generates.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path

from ..contract.catalog import CATALOG

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def _type_name(annotation: object) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args if a is not type(None))
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is not None:
        inner = ", ".join(_type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(annotation, "__name__", str(annotation))


def render() -> str:
    lines = [
        "# Events",
        "",
        "Generated from `aisci_nb/contract/catalog.py` by",
        "`python -m aisci_nb.ops.catalog_doc --write`;",
        "do not edit by hand. Every event is a CloudEvents 1.0 envelope (see",
        "`../shared/DESIGN.md`) whose `data` has the fields below; `?` marks an optional",
        "field. Extra fields are kept.",
        "",
        "| type | label | subject | data |",
        "|---|---|---|---|",
    ]
    for spec in CATALOG.values():
        fields = []
        for name, field in spec.data.model_fields.items():
            shown = field.alias or name
            optional = "" if field.is_required() else "?"
            fields.append(f"`{shown}`{optional}: {_type_name(field.annotation)}")
        lines.append(f"| `{spec.name}` | {spec.label} | `{spec.subject}/{{id}}` | "
                     f"{', '.join(fields)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true", help=f"write {DOC_PATH}")
    args = ap.parse_args(argv)
    if args.write:
        DOC_PATH.parent.mkdir(exist_ok=True)
        DOC_PATH.write_text(render())
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
