"""The analyst notebook runs top to bottom (with fewer draws), so it never rots.

Slow tier: the notebook compiles and fits the model in its own kernel (about 2.5 minutes on
2 cores), the longest test; the default tier stays under 5 minutes without it.
"""

import nbclient
import nbformat
import pytest

from tests.conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "february-11-plant.ipynb"


@pytest.mark.slow
def test_notebook_executes_with_few_draws():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    params.source = "DRAWS = 100\nTUNE = 200\nCHAINS = 2\nSEED = 1"
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
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
