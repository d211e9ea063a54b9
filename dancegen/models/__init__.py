"""Model families behind one interface (`base.DanceModel`), and the benchmark baselines."""

from . import baselines  # noqa: F401  (registers random_real and still_pose)
from . import bailando  # noqa: F401  (registers bailando)
from . import d2m  # noqa: F401  (registers d2m)
from . import diffusion  # noqa: F401  (registers diffusion)
from . import gan  # noqa: F401  (registers gan)
from . import masked  # noqa: F401  (registers masked)
from . import transflower  # noqa: F401  (registers transformer, transflower and moglow)
from .base import DanceModel, Music, check_model, load_model, model_names, register_model
from ..errors import UserError
from ..paths import DEFAULT_MODEL


@register_model("default")
def default_model(**_) -> DanceModel:
    """The bundled default model (dancegen/assets/default; its MODEL_CARD.md says what it is)."""
    if not (DEFAULT_MODEL / "config.json").is_file():
        raise UserError(DEFAULT_MODEL, "no default model is bundled yet; pass --model with a trained model "
                                       "folder (dancegen train configs/diffusion.yaml makes one)")
    return load_model(DEFAULT_MODEL)


__all__ = ["DEFAULT_MODEL", "DanceModel", "Music", "check_model", "load_model", "model_names", "register_model"]
