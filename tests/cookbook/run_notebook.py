"""Runs a Jupyter notebook's code cells in order, as "Run All" does, without Jupyter.

usage: run_notebook.py NOTEBOOK.ipynb [--support DIR]

The cells run in one namespace with the notebook's directory as the working directory and
first on `sys.path`, so `from utilities import …` and `Path("example_data")` resolve as they do
in Jupyter. `--support DIR` fills in what the notebook's directory lacks (its `utilities.py`,
its `example_data/` files) from DIR, in a copy: the notebook's own files always win and the
notebook itself is never changed. A cell that raises stops the run: the cell's number, its
first line and the traceback are printed and the exit status is 1.

Why not nbclient: it needs a Jupyter kernel (ipykernel, pyzmq) in CI for notebooks that use
no IPython magic; a cell using one (`%`, `!`) is refused here with a message instead.
"""

import json
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path


def fill_in(src: Path, dst: Path) -> None:
    """Copies every file under src that dst lacks."""
    for path in src.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            target = dst / path.relative_to(src)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)


def main() -> int:
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    notebook = Path(args[0]).resolve()
    support = Path(args[args.index("--support") + 1]).resolve() if "--support" in args else None
    cells = json.loads(notebook.read_text())["cells"]
    code = [
        ("".join(c["source"]) if isinstance(c["source"], list) else c["source"])
        for c in cells
        if c.get("cell_type") == "code"
    ]
    workdir = Path(tempfile.mkdtemp(prefix="tether-notebook-"))
    shutil.copytree(notebook.parent, workdir, dirs_exist_ok=True)
    if support:
        fill_in(support, workdir)
    os.chdir(workdir)
    sys.path.insert(0, str(workdir))
    namespace = {"__name__": "__main__"}
    for i, source in enumerate(code, 1):
        magic = next(
            (l for l in source.splitlines() if l.lstrip().startswith(("%", "!"))), None
        )
        if magic is not None:
            print(f"cell {i}: IPython magic `{magic.strip()}` can't run outside Jupyter", file=sys.stderr)
            return 1
        first = source.strip().splitlines()[0] if source.strip() else ""
        print(f"--- cell {i}/{len(code)}: {first}", flush=True)
        try:
            exec(compile(source, f"<{notebook.name} cell {i}>", "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            print(f"FAILED at cell {i} of {notebook.name}", file=sys.stderr)
            return 1
        sys.stdout.flush()
    print(f"--- {notebook.name}: all {len(code)} code cells ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
