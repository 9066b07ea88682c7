"""Training: the ``fit`` loop, checkpoints, torch.distributed, device and precision."""
