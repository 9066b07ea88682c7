"""Make a user's own VAE multi-rate, fold its gates at one β, export it.

Modules: ``scope`` (the β scope, ``ScopedLayer``, ``MultiRateModel``), ``select`` (which layers: names,
globs, rules, the paper's exclusions, execution order), ``make`` (``make_multirate``), ``vae``
(``ConvertedVAE``: the user's loss terms as D + β·R), ``fold`` (gates folded into weights at one β),
``export`` (safetensors + JSON, loaded back without pickle).
"""

from .export import CONFIG_FILE, WEIGHTS_FILE, ExportPaths, export_checkpoint, load_exported, read_export_config
from .fold import fold, fold_affine_into
from .make import make_multirate
from .scope import BetaNotSetError, BetaScope, MultiRateModel, ScopedLayer
from .select import execution_order, gateable_layers, last_layer, paper_exclude
from .vae import ConvertedOutput, ConvertedVAE, beta_context

__all__ = ["make_multirate", "paper_exclude", "gateable_layers", "execution_order", "last_layer",
           "MultiRateModel", "ScopedLayer", "BetaScope", "BetaNotSetError", "beta_context",
           "ConvertedVAE", "ConvertedOutput", "fold", "fold_affine_into",
           "export_checkpoint", "load_exported", "read_export_config", "ExportPaths", "CONFIG_FILE", "WEIGHTS_FILE"]
