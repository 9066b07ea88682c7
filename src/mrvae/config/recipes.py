"""The MR-VAE recipe per architecture: the settings a run leaves null take these (issue 14)."""

from __future__ import annotations

#: The MR-VAE recipe per architecture (issue 14; docs/results.md §6): the settings a run leaves null take
#: these. Measured at equal steps per model on Fashion-MNIST with the MLP and the ResNet: gates
#: 4·sigmoid(w·2u + b), and log β drawn with more mass at the low end and at both ends. The other
#: architectures, not measured, keep the recipe before issue 14 (``PREVIOUS_RECIPE``).
PREVIOUS_RECIPE = {"gate_scale": 2.0, "gate_input_scale": 1.0, "log_beta_tilt": 0.0, "log_beta_ends": 0.0}
TUNED_RECIPE = {"gate_scale": 4.0, "gate_input_scale": 2.0, "log_beta_tilt": 1.0, "log_beta_ends": 1.0}
ARCH_RECIPES: dict[str, dict[str, float]] = {"mlp": TUNED_RECIPE, "resnet": TUNED_RECIPE}


def arch_recipe(arch: str) -> dict[str, float]:
    """The recipe of ``arch``: ``ARCH_RECIPES``, else ``PREVIOUS_RECIPE``."""
    return ARCH_RECIPES.get(arch, PREVIOUS_RECIPE)
