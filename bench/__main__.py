"""``python -m bench [NAME] [ARGS...]``: run a benchmark by name; with no name, list them.

A benchmark is a module ``bench/NAME.py`` with a ``main(argv) -> int`` function; the first
line of its docstring describes it in the list. It ends with ``bench.verdict``: one line per
target, and a non-zero exit when one is missed. ``--target KEY=LIMIT`` (repeatable, any
benchmark) replaces a target's limit for the run.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> dict[str, str]:
    """name -> one-line description, read without importing the modules."""
    found = {}
    for path in sorted(HERE.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        has_main = any(
            isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body
        )
        if has_main:
            doc = ast.get_docstring(tree) or ""
            found[path.stem] = doc.strip().splitlines()[0] if doc.strip() else ""
    return found


def take_targets(args: list[str]) -> list[str]:
    """Move ``--target KEY=LIMIT`` (or ``--target=KEY=LIMIT``) into ``bench.verdict``'s
    overrides; the other arguments, for the benchmark."""
    from bench import verdict

    rest: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == "--target":
            value = next(it, "")
        elif arg.startswith("--target="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
            continue
        key, limit = verdict.parse_override(value)
        verdict.OVERRIDES[key] = limit
    return rest


def main(argv: list[str]) -> int:
    benchmarks = available()
    if not argv or argv[0] in ("-h", "--help", "list"):
        print("usage: python -m bench NAME [ARGS...]\n\navailable benchmarks:")
        for name, text in benchmarks.items():
            print(f"  {name:<16} {text}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in benchmarks:
        known = ", ".join(benchmarks) or "none"
        print(f"error: no benchmark {name!r}; available: {known}", file=sys.stderr)
        return 2
    try:
        rest = take_targets(rest)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{name}")
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
