"""Shared test settings: a small thread count so the suite behaves the same on 2 cores."""

import matplotlib
import torch

matplotlib.use("Agg")
torch.set_num_threads(1)
