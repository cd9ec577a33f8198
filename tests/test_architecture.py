"""ARCHITECTURE.md is the module map: every module it names exists, every module of model/ is
named in it, and it stays short enough to read."""

from __future__ import annotations

import re

from .conftest import ROOT

MAP = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")


def test_every_module_named_exists_and_every_module_is_named():
    named = set(re.findall(r"`(?:model/)?([a-z_]+)\.py`", MAP))
    modules = {p.stem for p in (ROOT / "model").glob("*.py")}
    assert named - modules == set(), "named but missing"
    assert modules - named == set(), "in model/ but not named"


def test_it_stays_short():
    assert len(MAP.splitlines()) <= 70
