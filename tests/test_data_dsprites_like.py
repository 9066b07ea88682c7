"""dsprites-like: the factor grid, index ↔ factor round trips, and what the rendered sprites must look like."""

import math

import pytest
import torch

from mrvae.data import load_data
from mrvae.data.dsprites_like import (FACTOR_SIZES, MARGIN, NUM_IMAGES, DSpritesLikeImages, classes_from_index,
                                      factor_values, index_from_classes, load_dsprites_like, render)
from mrvae.objectives import Likelihood


def test_grid_size_and_index_round_trip():
    assert NUM_IMAGES == 3 * 6 * 40 * 32 * 32 == 737_280
    index = torch.cat([torch.tensor([0, 1, 32, NUM_IMAGES - 1]), torch.randint(0, NUM_IMAGES, (500,))])
    classes = classes_from_index(index)
    assert torch.equal(index_from_classes(classes), index)
    assert classes[:4].tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 1, 0], [2, 5, 39, 31, 31]]
    with pytest.raises(ValueError, match=r"grid indices must lie in \[0, 737280\)"):
        classes_from_index(torch.tensor([NUM_IMAGES]))
    with pytest.raises(ValueError, match=r"factor classes must lie in"):
        render(torch.tensor([[3, 0, 0, 0, 0]]))


def test_factor_values_match_dsprites():
    values = factor_values(torch.tensor([[0, 0, 0, 0, 0], [2, 5, 39, 31, 31], [1, 1, 1, 1, 1]]))
    assert values[0].tolist() == [1.0, 0.5, 0.0, 0.0, 0.0]
    assert values[1].tolist() == [3.0, 1.0, 2 * math.pi, 1.0, 1.0]
    assert values[2].tolist() == pytest.approx([2.0, 0.6, 2 * math.pi / 39, 1 / 31, 1 / 31])


def test_sprites_are_binary_deterministic_and_batch_independent():
    classes = classes_from_index(torch.randint(0, NUM_IMAGES, (40,), generator=torch.Generator().manual_seed(0)))
    images = render(classes)
    assert images.shape == (40, 1, 64, 64) and set(images.unique().tolist()) <= {0.0, 1.0}
    singles = torch.cat([render(classes[i:i + 1]) for i in range(40)])
    assert torch.equal(images, singles) and torch.equal(render(classes, chunk=7), images)
    # orientation 0 and 2π are the same sprite
    ends = torch.tensor([[s, 3, o, 10, 20] for s in range(3) for o in (0, 39)])
    pair = render(ends).view(3, 2, -1)
    assert torch.equal(pair[:, 0], pair[:, 1])
    shapes = render(torch.tensor([[s, 5, 0, 16, 16] for s in range(3)])).view(3, -1)
    assert not torch.equal(shapes[0], shapes[1]) and not torch.equal(shapes[1], shapes[2])


def test_scale_grows_area_and_position_moves_the_centroid():
    for shape in range(3):
        area = render(torch.tensor([[shape, s, 7, 16, 16] for s in range(6)])).sum(dim=(1, 2, 3))
        assert (area[1:] > area[:-1]).all(), area
    pixel = torch.arange(64) + 0.5
    span = 64 - 2 * MARGIN
    for k in (0, 9, 31):
        image = render(torch.tensor([[0, 2, 0, k, 31 - k]]))[0, 0]  # an axis-aligned square is symmetric
        cx = (image.sum(0) * pixel).sum() / image.sum()
        cy = (image.sum(1) * pixel).sum() / image.sum()
        assert abs(cx - (MARGIN + span * k / 31)) <= 0.5 and abs(cy - (MARGIN + span * (31 - k) / 31)) <= 0.5


def test_sprites_never_touch_the_border():
    corners = [(x, y) for x in (0, 31) for y in (0, 31)]
    classes = torch.tensor([[s, 5, o, x, y] for s in range(3) for o in range(0, 40, 3) for x, y in corners])
    images = render(classes)[:, 0]
    border = images[:, 0].sum() + images[:, -1].sum() + images[:, :, 0].sum() + images[:, :, -1].sum()
    assert border == 0
    # the same sprite at every corner keeps (about) its area: nothing is clipped
    area = images.sum(dim=(1, 2)).view(3, -1, 4)
    assert ((area.max(dim=2).values - area.min(dim=2).values) <= 0.1 * area.mean(dim=2)).all()


def test_splits_are_disjoint_seeded_subsets_with_factors():
    splits = load_dsprites_like(seed=3, num_train=50, num_valid=10, num_test=20)
    grid = splits.notes["grid_index"]
    union = torch.cat([grid["train"], grid["valid"], grid["test"]])
    assert union.unique().numel() == 80
    for name in ("train", "valid", "test"):
        dataset = getattr(splits, name)
        assert torch.equal(dataset.factors, classes_from_index(grid[name]))
    assert torch.equal(splits.train.batch(torch.tensor([4, 0])), render(splits.train.factors[[4, 0]]))
    assert torch.equal(splits.test[3], render(splits.test.factors[3:4])[0])
    again = load_dsprites_like(seed=3, num_train=50, num_valid=10, num_test=20)
    other = load_dsprites_like(seed=4, num_train=50, num_valid=10, num_test=20)
    assert torch.equal(again.train.factors, splits.train.factors)
    assert not torch.equal(other.train.factors, splits.train.factors)
    assert splits.info.likelihood is Likelihood.BERNOULLI and splits.info.shape == (1, 64, 64)
    assert splits.notes["factor_sizes"] == FACTOR_SIZES
    with pytest.raises(ValueError, match="need num_train, num_test >= 1"):
        load_dsprites_like(num_train=NUM_IMAGES, num_valid=0, num_test=1)


def test_registry_loads_it_without_files(tmp_path):
    splits = load_data("dsprites-like", tmp_path / "empty")
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (20_000, 2_000, 10_000)
    assert isinstance(splits.train, DSpritesLikeImages) and splits.train[0].shape == (1, 64, 64)


def test_cached_rendering_matches_fresh_rendering():
    classes = classes_from_index(torch.arange(0, NUM_IMAGES, 9_973))
    cached, fresh = DSpritesLikeImages(classes), DSpritesLikeImages(classes, cache=False)
    picks = torch.tensor([3, 1, 3, 70])
    first = cached.batch(picks)
    assert torch.equal(first, render(classes[picks])) and torch.equal(fresh.batch(picks), first)
    assert cached._ready.nonzero().view(-1).tolist() == [1, 3, 70]
    assert torch.equal(cached.batch(picks), first) and torch.equal(cached[70], first[3])
    assert torch.equal(cached[-1], fresh[-1])
