"""The field's dance metrics, computed exactly as the published reference code computes them.

Positions are (T, 24, 3) joint positions in metres, SMPL joint order, Y up unless ``up="z"``.

- ``kinetic_features`` / ``geometric_features``: the AIST++ API / Bailando features behind FID_k,
  FID_g, Div_k and Div_g;
- ``fid`` / ``diversity``: Bailando's ``metrics_new.py``;
- ``beat_align_score``: Bailando's BAS (``variant="bailando"``) or FACT's (``variant="fact"``);
- ``physical_foot_contact``: EDGE's PFC.
"""

from importlib import import_module

# Each metric's module, loaded when the metric is first used: they load scipy (a second of imports
# on two cores), which `dancegen generate` does not need when it loads the style classifier (.style).
_MODULES = {
    "beat_align_score": "beats",
    "diversity": "distribution",
    "fid": "distribution",
    "geometric_features": "geometric",
    "kinetic_features": "kinetic",
    "motion_beats": "beats",
    "physical_foot_contact": "foot_contact",
}
__all__ = sorted(_MODULES)


def __getattr__(name: str):
    if name in _MODULES:
        return getattr(import_module(f".{_MODULES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
