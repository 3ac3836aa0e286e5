"""`socialdesk report`: execute the managers' notebooks and write self-contained HTML (R28).

Each notebook in `notebooks/` is run with papermill, its `parameters` cell replaced by the date
range, filters and store location given here, on the Python running this (the venv's kernel). The
executed notebook becomes one HTML file with its charts embedded as images and the code hidden,
so a manager can open it anywhere. Notebooks run in parallel worker processes, each with its own
kernel. Notebooks only read the store (`warehouse.connect`).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

_EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\ssrc=\"https?://[^\"]*\"[^>]*>\s*</script>", re.I)
NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
ORDER = ("overview", "volume", "responsiveness", "backlog", "agents", "messaging_windows", "delivery", "end_users",
         "tag_hygiene")


def notebooks(directory: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The report notebooks, overview first."""
    found = {p.stem: p for p in directory.glob("*.ipynb")}
    return [found[n] for n in ORDER if n in found] + sorted(p for n, p in found.items() if n not in ORDER)


def parameters(start: date | str | None = None, end: date | str | None = None, *, channels: list[str] | None = None,
               accounts: list[str] | None = None, db_path: str | None = None,
               config_path: str | None = None) -> dict[str, Any]:
    """The notebooks' parameters; the range defaults to the last 30 days, today included."""
    end_d = date.fromisoformat(str(end)) if end else date.today()
    start_d = date.fromisoformat(str(start)) if start else end_d - timedelta(days=29)
    if start_d > end_d:
        raise ValueError(f"--from {start_d} is after --to {end_d}")
    return {"start": start_d.isoformat(), "end": end_d.isoformat(), "channels": channels, "accounts": accounts,
            "db_path": db_path, "config_path": config_path}


def _quiet() -> None:
    # nbconvert asks for alternative text on every chart; the pages are for managers' eyes, and a
    # warning per image drowns what matters on the console.
    logging.getLogger("traitlets").setLevel(logging.ERROR)


def _kernel_env() -> None:
    # Charts render through the inline backend (Agg underneath) into the notebook, never a window.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    # The kernel must be this interpreter (the venv's), whatever kernelspecs the machine has.
    bin_dir = str(Path(sys.executable).parent)
    if not os.environ.get("PATH", "").startswith(bin_dir + os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def execute_one(notebook: Path, out_dir: Path, params: dict[str, Any], timeout: int = 600) -> Path:
    """Execute one notebook with `params` and write `<name>.html` (and the executed `.ipynb`) into out_dir."""
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    _kernel_env()
    _quiet()
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / f"{notebook.stem}.ipynb"
    # The kernel's own log (its transport, the interrupt that ends it) is not the manager's business; a
    # failing cell still fails the run, with its traceback, through papermill.
    papermill.execute_notebook(str(notebook), str(executed), parameters=params, kernel_name="python3",
                               cwd=str(out_dir), progress_bar=False, log_output=False, execution_timeout=timeout,
                               request_save_on_cell_execute=False,
                               extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True)
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    # The page needs no scripts (charts are PNGs, tables HTML): drop the template's CDN ones so it
    # opens offline and fetches nothing.
    body = _EXTERNAL_SCRIPT.sub("", body)
    html = out_dir / f"{notebook.stem}.html"
    html.write_text(body, encoding="utf-8")
    return html


def run_report(start: date | str | None = None, end: date | str | None = None, out_dir: str | Path = "reports", *,
               db_path: str | None = None, config_path: str | None = None, channels: list[str] | None = None,
               accounts: list[str] | None = None, workers: int = 2,
               notebook_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """Execute every report notebook into self-contained HTML in `out_dir`; returns the HTML files.

    The store: `db_path` (opened read-only), else the configuration's (`config_path`), attached live
    over Quack when the service serves it.
    """
    params = parameters(start, end, channels=channels, accounts=accounts,
                        db_path=str(Path(db_path).resolve()) if db_path else None,
                        config_path=str(Path(config_path).resolve()) if config_path else None)
    out = Path(out_dir).resolve()
    books = notebooks(notebook_dir)
    if not books:
        raise FileNotFoundError(f"no notebooks in {notebook_dir}")
    if workers <= 1:
        return [execute_one(nb, out, params) for nb in books]
    with ProcessPoolExecutor(max_workers=min(workers, len(books))) as pool:
        futures = [pool.submit(execute_one, nb, out, params) for nb in books]
        return [f.result() for f in futures]
