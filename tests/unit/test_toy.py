"""The toy dataset of Section 5.1 / Appendix C.1."""

import torch

from pagrob.data import make_toy


def test_toy_dataset_matches_the_paper():
    ds = make_toy([[-50, -10, 30], [-30, 10, 50]], n_per_mode=1000, n_test=600, seed=0)
    assert ds.x_train.shape == (6000, 2) and ds.x_test.shape == (600, 2)
    assert (ds.y_train == 0).sum() == 3000 and (ds.y_train == 1).sum() == 3000
    assert (ds.y_test == 0).sum() == 300
    torch.testing.assert_close(ds.x_train[:, 1], 2 * ds.x_train[:, 0])  # on the line x2 = 2 x1
    for label, centers in enumerate([[-50, -10, 30], [-30, 10, 50]]):
        x1 = ds.x_train[ds.y_train == label, 0].view(3, 1000)
        for k, c in enumerate(centers):
            assert abs(x1[k].mean().item() - c) < 0.15
            assert abs(x1[k].std().item() - 1) < 0.1
    assert ds.bounds is None
    again = make_toy([[-50, -10, 30], [-30, 10, 50]], 1000, 600, seed=0)
    assert torch.equal(ds.x_train, again.x_train)
