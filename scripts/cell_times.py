"""Where an executed notebook's time went: its slowest code cells, from the per-cell durations papermill
writes into the notebook's metadata (``labkit run`` keeps them in ``runs/<profile>/``).

    .venv/bin/python scripts/cell_times.py runs/quick/02_pruning_resnet20.ipynb [...] [--top 8]
"""

from __future__ import annotations

import argparse

import nbformat


def cell_times(path: str) -> list[tuple[float, int, str]]:
    """(seconds, cell index, first line) of every code cell papermill timed, slowest first."""
    nb = nbformat.read(path, as_version=4)
    rows = [(cell.metadata.get("papermill", {}).get("duration") or 0.0, i, cell.source.split("\n", 1)[0])
            for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    return sorted(rows, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    for path in args.notebooks:
        rows = cell_times(path)
        print(f"{path}: {sum(r[0] for r in rows):.1f} s in code cells")
        for seconds, index, first in rows[:args.top]:
            print(f"  {seconds:6.1f} s  cell {index:3d}  {first[:80]}")


if __name__ == "__main__":
    main()
