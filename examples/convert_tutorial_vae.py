"""A tutorial VAE made multi-rate (heads fc21/fc22 and output fc4 ungated, as in the paper), trained on noise."""

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from mrvae.beta import BetaRange
from mrvae.convert import ConvertedVAE, make_multirate, paper_exclude
from mrvae.objectives import bernoulli_distortion, gaussian_rate


class VAE(nn.Module):  # written with no knowledge of mrvae
    def __init__(self, hidden=400, latent=20):
        super().__init__()
        self.fc1, self.fc3 = nn.Linear(784, hidden), nn.Linear(latent, hidden)
        self.fc21, self.fc22, self.fc4 = nn.Linear(hidden, latent), nn.Linear(hidden, latent), nn.Linear(hidden, 784)

    def forward(self, x):
        h = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.fc4(F.relu(self.fc3(z))).view_as(x), mu, logvar  # Bernoulli logits


def loss_terms(output, x):  # (distortion, rate): (B,) nats per example, summed over pixels / latents
    return bernoulli_distortion(output[0], x), gaussian_rate(output[1], output[2])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    for flag, default in (("--steps", 500), ("--batch", 128), ("--examples", 1024), ("--hidden", 400)):
        parser.add_argument(flag, type=int, default=default)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    data = torch.bernoulli(torch.rand(1, 784).expand(args.examples, 784))  # per-pixel rates, fixed
    beta_range, user_vae = BetaRange(0.01, 10.0), VAE(args.hidden)
    mr = make_multirate(user_vae, beta_range, exclude=paper_exclude(user_vae, latent_heads=["fc21", "fc22"]))
    model = ConvertedVAE(mr, loss_terms)  # objective(x, beta, u, generator) -> ((B,) D + βR, out)
    optimiser, generator = torch.optim.Adam(model.parameters(), lr=1e-3), torch.Generator().manual_seed(0)
    losses = []
    for _ in range(args.steps):
        x = data[torch.randint(0, args.examples, (args.batch,), generator=generator)]
        beta = beta_range.sample(args.batch, generator)  # (B, 1): one β per example
        loss, _ = model.objective(x, beta, beta_range.standardise(beta))
        optimiser.zero_grad()
        loss.mean().backward()
        optimiser.step()
        losses.append(loss.mean().item())
    for beta in (0.01, 1.0, 10.0):  # one model, any β in the range
        with mr.beta(beta):
            distortion, rate = loss_terms(mr(data[:256]), data[:256])
        print(f"β={beta:<5} rate {rate.mean():7.2f} nats  distortion {distortion.mean():7.2f} nats")
    return torch.tensor(losses[:5]).mean().item(), torch.tensor(losses[-5:]).mean().item()  # first, last


if __name__ == "__main__":
    main()
