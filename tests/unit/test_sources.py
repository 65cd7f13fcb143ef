"""Gradient sources: nearest neighbours (Eq. 3), one image, class mean."""

import pytest
import torch

from pagrob import sources
from pagrob.data import Dataset


def toy_images(n=60, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 1, 4, 4, generator=g) * 255).round() / 255
    y = torch.arange(n) % classes
    return x, y


def test_nearest_neighbor_is_nearest_sample_and_never_itself():
    x, y = toy_images()
    out = sources.nearest_neighbor(
        x, y, 3, sample_size=10, generator=torch.Generator().manual_seed(0)
    )
    nn_index, sample_index = out["nn_index"], out["sample_index"]
    assert sample_index.shape == (3, 10)
    for c in range(3):
        assert (y[sample_index[c]] == c).all()
        assert len(set(sample_index[c].tolist())) == 10  # drawn without replacement
    for i in range(len(x)):
        for c in range(3):
            j = nn_index[i, c].item()
            assert j != i
            assert j in sample_index[c].tolist()
            others = [k for k in sample_index[c].tolist() if k != i]
            best = min(((x[k] - x[i]) ** 2).sum().item() for k in others)
            assert ((x[j] - x[i]) ** 2).sum().item() == pytest.approx(best)


def test_nearest_neighbor_skips_exact_duplicates():
    x, y = toy_images()
    x[3] = x[0]  # image 3 (class 0) duplicates image 0 (class 0)
    g = torch.Generator().manual_seed(0)
    out = sources.nearest_neighbor(
        x, y, 3, sample_size=19, generator=g
    )  # every other class-0 image
    assert 3 in out["sample_index"][0].tolist() or 0 in out["sample_index"][0].tolist()
    for i in (0, 3):
        j = out["nn_index"][i, 0].item()
        assert not torch.equal(x[j], x[i])


def test_nearest_neighbor_sample_too_large():
    x, y = toy_images()
    with pytest.raises(ValueError, match="nn_sample_size"):
        sources.nearest_neighbor(x, y, 3, sample_size=20, generator=torch.Generator())


def test_class_mean_equals_mean():
    x, y = toy_images()
    plain = sources.class_mean(x, y, 3, rescale=False)["representatives"]
    for c in range(3):
        torch.testing.assert_close(plain[c], x[y == c].mean(0))
    scaled = sources.class_mean(x, y, 3, rescale=True)["representatives"]
    for c in range(3):
        target_norm = x[y == c].flatten(1).norm(dim=1).mean()
        torch.testing.assert_close(scaled[c].norm(), target_norm)
        cos = torch.nn.functional.cosine_similarity(scaled[c].flatten(), plain[c].flatten(), dim=0)
        assert cos.item() == pytest.approx(1.0)


def test_one_image_is_a_training_image_of_its_class():
    x, y = toy_images()
    out = sources.one_image(x, y, 3, torch.Generator().manual_seed(5))
    for c in range(3):
        i = out["train_index"][c]
        assert y[i] == c
        torch.testing.assert_close(out["representatives"][c], x[i])
    again = sources.one_image(x, y, 3, torch.Generator().manual_seed(5))
    assert torch.equal(out["train_index"], again["train_index"])


def test_targets_are_r_minus_x():
    x, y = toy_images()
    ds = Dataset("t", x, y, x[:3], y[:3], ["a", "b", "c"], torch.zeros(1), torch.ones(1))
    built = sources.build("nearest_neighbor", ds, seed=0, nn_sample_size=5)
    src = sources.NearestNeighbors(x, built["nn_index"])
    index = torch.tensor([4, 7, 11])
    targets = src.for_batch(x[index], index, None)
    for c in range(3):
        torch.testing.assert_close(targets(c), x[built["nn_index"][index, c]] - x[index])
    reps = sources.build("class_mean", ds, seed=0)["representatives"]
    targets = sources.GlobalRepresentatives(reps).for_batch(x[index], index, None)
    torch.testing.assert_close(targets(1), reps[1].expand(3, 1, 4, 4) - x[index])


def test_crop_flip_known_answer():
    from pagrob.data import CropFlip

    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    # image 0: offset (0, 0) in the 1-padded image = shift down-right by one, zeros enter
    # image 1: offset (1, 2) = shift left by one, then flipped
    aug = CropFlip(
        torch.tensor([0, 1]), torch.tensor([0, 2]), torch.tensor([False, True]), padding=1
    )
    out = aug(x)
    expected0 = torch.zeros(4, 4)
    expected0[1:, 1:] = x[0, 0, :3, :3]
    torch.testing.assert_close(out[0, 0], expected0)
    shifted = torch.zeros(4, 4)
    shifted[:, :3] = x[1, 0, :, 1:]
    torch.testing.assert_close(out[1, 0], shifted.flip(1))


def test_targets_follow_the_augmentation():
    """With crop and flip, the target of an augmented image is the target of that image:
    global representatives minus the augmented image; a nearest neighbour augmented with the
    same crop and flip, minus the augmented image (= the augmented g(x, c))."""
    from pagrob.data import CropFlip

    x, y = toy_images(n=30)
    ds = Dataset("t", x, y, x[:3], y[:3], ["a", "b", "c"], torch.zeros(1), torch.ones(1))
    index = torch.tensor([2, 9, 17, 25])
    aug = CropFlip.sample(4, padding=1, flip=True, generator=torch.Generator().manual_seed(3))
    assert aug.flip.any() and (aug.dy != 1).any()  # a draw that really moves things
    x_aug = aug(x[index])

    nn_index = sources.build("nearest_neighbor", ds, seed=0, nn_sample_size=5)["nn_index"]
    targets = sources.NearestNeighbors(x, nn_index).for_batch(x_aug, index, aug)
    for c in range(3):
        g_plain = x[nn_index[index, c]] - x[index]  # g(x, c) before augmentation
        torch.testing.assert_close(targets(c), aug(g_plain))
        torch.testing.assert_close(targets(c), aug(x[nn_index[index, c]]) - x_aug)

    reps = sources.build("class_mean", ds, seed=0)["representatives"]
    targets = sources.GlobalRepresentatives(reps).for_batch(x_aug, index, aug)
    for c in range(3):
        torch.testing.assert_close(targets(c), reps[c].expand_as(x_aug) - x_aug)


# --- clustered_nn: k-means centroids per class, the nearest one as representative ---------------


def clustered_targets(x, y, k, seed=0):
    ds = Dataset("t", x, y, x[:3], y[:3], ["a", "b", "c"], torch.zeros(1), torch.ones(1))
    built = sources.build("clustered_nn", ds, seed=seed, clusters=k)
    return built, sources.nearest_centroids(built["centroids"], built["centroid_index"])


def test_clustered_nn_with_one_cluster_is_the_unrescaled_class_mean():
    x, y = toy_images()
    built, src = clustered_targets(x, y, 1)
    assert built["centroids"].shape == (3, 1, 1, 4, 4)
    assert built["centroid_index"].shape == (60, 3)
    means = sources.class_mean(x, y, 3, rescale=False)["representatives"]
    index = torch.arange(60)
    got = src.for_batch(x, index, None)
    want = sources.GlobalRepresentatives(means).for_batch(x, index, None)
    for c in range(3):
        torch.testing.assert_close(got(c), want(c), atol=1e-6, rtol=0)


def test_clustered_nn_with_a_cluster_per_image_is_the_nearest_neighbour_over_the_class():
    """k = class size: every centroid is one image, and the nearest centroid is x's nearest
    neighbour over the whole class: for the other classes any image, for its own class any
    image but x itself (Eq. 3 with D_c = the whole class)."""
    x, y = toy_images()
    built, src = clustered_targets(x, y, 20)
    index = torch.arange(60)
    targets = src.for_batch(x, index, None)
    for c in range(3):
        members = (y == c).nonzero().flatten()
        d2 = ((x[:, None] - x[None, members]) ** 2).flatten(2).sum(2).double()  # [60, 20]
        d2[members, torch.arange(20)] = float("inf")  # x itself, for its own class
        nearest = members[d2.argmin(1)]
        torch.testing.assert_close(targets(c), x[nearest] - x, atol=1e-6, rtol=0)
    # the same in small chunks (the own-class correction at offsets into the training set)
    chunked = sources.clustered_nn(x, y, 3, 20, torch.Generator().manual_seed(0), chunk=7)
    assert torch.equal(chunked["centroid_index"], built["centroid_index"])


def test_clustered_nn_own_class_uses_the_own_cluster_but_never_x_itself():
    """The own cluster's centroid (its mean, not x) is x's representative for its own class;
    a cluster that is x alone is skipped for the next nearest centroid."""
    x, y = toy_images()
    built, _ = clustered_targets(x, y, 4)
    own = built["centroid_index"][torch.arange(60), y]
    labels = built["kmeans_labels"]  # k-means' own assignment: the image's own cluster
    own_centroid = built["centroids"][y, labels].flatten(1)
    alone = (own_centroid - x.flatten(1)).double().pow(2).sum(1) <= 1e-9  # clusters of one image
    assert 0 < alone.sum() < 10  # this draw has a few (image 21 among them)
    assert torch.equal(own[~alone], labels[~alone])
    assert (own[alone] != labels[alone]).all()
    # an outlier far from everything becomes a cluster of its own (k-means++ seeds it)
    x[5] = 0  # class 2
    x[5, 0, 0, 0] = 40.0
    built, _ = clustered_targets(x, y, 4)
    cents = built["centroids"][2].flatten(1)
    alone = (cents - x[5].flatten()).double().pow(2).sum(1) <= 1e-9
    assert alone.sum() == 1  # one centroid is x[5] itself ...
    picked = built["centroid_index"][5, 2]
    assert not alone[picked]  # ... and it is not its representative
    d2 = (cents - x[5].flatten()).pow(2).sum(1).masked_fill(alone, float("inf"))
    assert picked == d2.argmin()


def test_clustered_nn_is_seeded():
    x, y = toy_images()
    a, _ = clustered_targets(x, y, 3, seed=1)
    b, _ = clustered_targets(x, y, 3, seed=1)
    assert torch.equal(a["centroids"], b["centroids"])
    assert torch.equal(a["centroid_index"], b["centroid_index"])


def test_clustered_nn_more_clusters_than_images():
    x, y = toy_images()
    with pytest.raises(ValueError, match=r"targets\.clusters.*at most 20"):
        clustered_targets(x, y, 21)


def test_clustered_nn_targets_follow_the_augmentation_and_load(tmp_path):
    from pagrob import io
    from pagrob.data import CropFlip

    x, y = toy_images(n=30)
    ds = Dataset("t", x, y, x[:3], y[:3], ["a", "b", "c"], torch.zeros(1), torch.ones(1))
    built = sources.build("clustered_nn", ds, seed=0, clusters=3)
    io.save(built, tmp_path / "clustered_nn.pt")
    src = sources.load_representatives(tmp_path / "clustered_nn.pt", ds, "clustered_nn")
    index = torch.tensor([2, 9, 17, 25])
    aug = CropFlip.sample(4, padding=1, flip=True, generator=torch.Generator().manual_seed(3))
    targets = src.for_batch(aug(x[index]), index, aug)
    for c in range(3):
        r = built["centroids"][c, built["centroid_index"][index, c]]
        torch.testing.assert_close(targets(c), aug(r - x[index]))


def test_make_targets_step_builds_clustered_nn(tmp_path, monkeypatch):
    """--clusters reaches the library; without it the library's default is used."""
    from pagrob import io
    from pagrob.data import save_prepared
    from pagrob.steps import make_targets

    x, y = toy_images()
    save_prepared(
        Dataset("t", x, y, x[:3], y[:3], ["a", "b", "c"], torch.zeros(1), torch.ones(1)),
        tmp_path / "d.pt",
    )
    for extra, k in ((["--clusters", "4"], 4), ([], sources.CLUSTERS)):
        out = tmp_path / f"k{k}.pt"
        argv = [
            "make_targets",
            "--data",
            str(tmp_path / "d.pt"),
            "--source",
            "clustered_nn",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
        monkeypatch.setattr("sys.argv", argv + extra)
        make_targets.main()
        built = io.load(out, "targets")
        assert built["centroids"].shape == (3, k, 1, 4, 4) and built["clusters"] == k


def test_drawn_targets_differ_between_two_training_seeds():
    """A drawn source's targets come from the draw seed (the model's training seed, where
    targets.per_seed): two seeds draw other representatives; class_mean draws nothing."""
    from pagrob.datasets import load_digits

    ds = load_digits(0.3, 0)
    built = {
        (source, seed): sources.build(source, ds, seed=seed, nn_sample_size=20, clusters=4)
        for source in ("one_image", "nearest_neighbor", "clustered_nn", "class_mean")
        for seed in (0, 1)
    }
    for source, key in (
        ("one_image", "train_index"),
        ("nearest_neighbor", "nn_index"),
        ("clustered_nn", "centroids"),
    ):
        assert not torch.equal(built[(source, 0)][key], built[(source, 1)][key]), source
        again = sources.build(source, ds, seed=1, nn_sample_size=20, clusters=4)
        assert torch.equal(again[key], built[(source, 1)][key]), source  # a seed fixes its draw
        assert built[(source, 1)]["seed"] == 1
    assert torch.equal(
        built[("class_mean", 0)]["representatives"], built[("class_mean", 1)]["representatives"]
    )
