"""Make a user's own VAE multi-rate, fold its gates at one β, export it."""
