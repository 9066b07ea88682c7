"""Run configuration: the settings (frozen dataclasses that validate themselves), their named choices,
the per-architecture recipe, and their dict / YAML round trips; ``__version__``, which they record."""

#: The package version: checkpoints, exports and config files record it (pyproject reads it from here).
__version__ = "0.2.0"

from .choices import Method, Optimizer, Precision, Schedule  # noqa: E402
from .files import from_dict, load_yaml, save_yaml, stored_run_config, to_dict  # noqa: E402
from .recipes import ARCH_RECIPES, PREVIOUS_RECIPE, TUNED_RECIPE, arch_recipe  # noqa: E402
from .settings import (GATE_SETTINGS, BaselineConfig, DataConfig, EvalConfig, ModelConfig,  # noqa: E402
                       RunConfig, TrainConfig)

__all__ = ["__version__", "Method", "Optimizer", "Precision", "Schedule", "ARCH_RECIPES", "PREVIOUS_RECIPE",
           "TUNED_RECIPE", "arch_recipe", "GATE_SETTINGS", "DataConfig", "ModelConfig", "TrainConfig", "EvalConfig",
           "BaselineConfig", "RunConfig", "to_dict", "from_dict", "stored_run_config", "save_yaml", "load_yaml"]
