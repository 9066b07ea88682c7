"""What ``mrvae run`` does: the run folder, one method's training, the β-VAE sweep, the comparison."""
