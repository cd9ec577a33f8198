"""The analyst notebook runs top to bottom, so it never rots: by default it opens a saved run
(fast: no sampling), and with REFIT it fits the case itself (slow tier)."""

import nbclient
import nbformat
import pytest

from tests.conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "february-11-plant.ipynb"


def _execute(parameters: str, timeout: int = 600):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    params.source = parameters
    client = nbclient.NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert errors == []
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # fan chart, prior vs posterior, readings
    return nb


def _text(nb) -> str:
    return "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )


def test_notebook_opens_the_saved_run_without_sampling(small_fit, tmp_path):
    """The default: the latest saved run (here a run written from the test fit), drawn from
    posterior.nc and summary.json; nothing is compiled or sampled (REFIT is False)."""
    import time

    from model.report import write_report
    from model.summary import summarize

    run = write_report(small_fit, summarize(small_fit), tmp_path)
    start = time.perf_counter()
    nb = _execute(f'RUN = "{run}"\nREFIT = False\nDRAWS = 100\nTUNE = 200\nCHAINS = 2\nSEED = 1')
    seconds = time.perf_counter() - start
    text = _text(nb)
    assert f"opened run {run.name} (fitted {small_fit.attrs['created']}" in text
    assert "fitted with" not in text  # no fit ran
    assert seconds < 240, seconds  # kernel start and imports dominate; a fit takes minutes


@pytest.mark.slow(minutes=0.9)
def test_notebook_refits_with_few_draws():
    """REFIT = True: the notebook fits the case itself (about 2.5 minutes on 2 cores)."""
    nb = _execute("RUN = None\nREFIT = True\nDRAWS = 100\nTUNE = 200\nCHAINS = 2\nSEED = 1")
    assert "fitted with" in _text(nb)
