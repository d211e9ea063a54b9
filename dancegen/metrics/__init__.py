"""The field's dance metrics, computed exactly as the published reference code computes them.

Positions are (T, 24, 3) joint positions in metres, SMPL joint order, Y up unless ``up="z"``.

- ``kinetic_features`` / ``geometric_features``: the AIST++ API / Bailando features behind FID_k,
  FID_g, Div_k and Div_g;
- ``fid`` / ``diversity``: Bailando's ``metrics_new.py``;
- ``beat_align_score``: Bailando's BAS (``variant="bailando"``) or FACT's (``variant="fact"``);
- ``physical_foot_contact``: EDGE's PFC.
"""

from .beats import beat_align_score, motion_beats
from .distribution import diversity, fid
from .foot_contact import physical_foot_contact
from .geometric import geometric_features
from .kinetic import kinetic_features

__all__ = [
    "beat_align_score",
    "diversity",
    "fid",
    "geometric_features",
    "kinetic_features",
    "motion_beats",
    "physical_foot_contact",
]
