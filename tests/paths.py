"""Where the bundled test data lives (shared by the test modules)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
# Public-domain photos (tests/data/demo_faces/SOURCES.tsv says where each came from).
DEMO_FACES = DATA / "demo_faces"
# The official DMDNet implementation's numerical fixture (its README states the rule and tolerances).
DMDNET_FIXTURE = DATA / "dmdnet_official"
# The official ASFFNet512 implementation's numerical fixture (its README states the rule and tolerances).
ASFFNET_FIXTURE = DATA / "asffnet512_official"
