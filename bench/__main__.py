"""``python -m bench [NAME] [ARGS...]``: run a benchmark by name; with no name, list them."""

from __future__ import annotations

import importlib
import sys

#: name -> (module, one-line description). Each module has ``main(argv) -> int``.
BENCHMARKS = {
    "read_commands": (
        "bench.read_commands",
        "wall time of the CLI's read commands on 1,000 cycles x 20 action items (< 0.5 s each)",
    ),
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "list"):
        print("usage: python -m bench NAME [ARGS...]\n\navailable benchmarks:")
        for name, (_module, text) in BENCHMARKS.items():
            print(f"  {name:<16} {text}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"error: no benchmark {name!r}; available: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
