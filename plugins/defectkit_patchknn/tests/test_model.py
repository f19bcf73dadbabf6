"""The model's pieces: coreset selection, nearest neighbours, backbones and weights, checkpoints."""

from urllib.error import URLError

import pytest
import torch

from defectkit.errors import DefectkitError
from defectkit_patchknn import model as knn
from defectkit_patchknn.model import FeatureSettings, PatchKNNModel, build_backbone, greedy_coreset

RANDOM = FeatureSettings("resnet18", None, ("layer2", "layer3"), 64, 0)


def test_coreset_has_the_requested_count_of_distinct_rows():
    features = torch.randn(500, 48, generator=torch.Generator().manual_seed(0))
    for projection in (0, 16):
        chosen = greedy_coreset(features, 37, projection=projection, seed=1)
        assert chosen.shape == (37,) and len(set(chosen.tolist())) == 37


def test_coreset_picks_one_row_per_separated_cluster():
    generator = torch.Generator().manual_seed(0)
    centres = torch.eye(8, 32) * 100
    features = (centres[:, None, :] + torch.randn(8, 50, 32, generator=generator)).reshape(-1, 32)
    chosen = greedy_coreset(features, 8, projection=0)
    assert sorted((chosen // 50).tolist()) == list(range(8))


def test_coreset_is_a_k_center_cover():
    # farthest-first: the chosen rows are pairwise at least as far apart as the covering radius,
    # the property behind PatchCore's 2-approximation; a random subset covers far worse
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2000, 3, generator=generator) * torch.tensor([0.5, 1.0, 3.0])
    chosen = greedy_coreset(features, 60, projection=0)
    radius = torch.cdist(features, features[chosen]).min(dim=1).values.max()
    pairwise = torch.cdist(features[chosen], features[chosen]) + torch.eye(60) * 1e9
    assert pairwise.min() >= radius - 1e-4
    random_subset = torch.randperm(2000, generator=generator)[:60]
    assert radius < 0.6 * torch.cdist(features, features[random_subset]).min(dim=1).values.max()


def test_nearest_neighbours_in_blocks_match_brute_force(monkeypatch):
    monkeypatch.setattr(knn, "DISTANCE_BLOCK", 7 * 40)  # 7 queries a block: several blocks and a ragged last one
    generator = torch.Generator().manual_seed(0)
    queries, bank = torch.randn(50, 8, generator=generator), torch.randn(40, 8, generator=generator)
    distance, index = knn.nearest_neighbours(queries, bank)
    full = torch.cdist(queries, bank)
    assert torch.equal(index, full.argmin(dim=1))
    assert torch.allclose(distance, full.min(dim=1).values, atol=1e-5)


def test_blur_keeps_the_shape_of_small_maps():
    maps = torch.zeros(2, 32, 32)
    maps[:, 16, 16] = 1
    blurred = knn.gaussian_blur(maps, 4.0)
    assert blurred.shape == maps.shape and blurred[0].argmax() == 16 * 32 + 16 and blurred.sum() > 1.9


def test_random_backbone_is_seeded_and_leaves_the_global_stream_alone():
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    first = knn.PatchFeatureExtractor(build_backbone("resnet18", None, 0), ("layer2",)).fingerprint()
    assert torch.equal(torch.rand(1), expected)
    again = knn.PatchFeatureExtractor(build_backbone("resnet18", None, 0), ("layer2",)).fingerprint()
    other = knn.PatchFeatureExtractor(build_backbone("resnet18", None, 1), ("layer2",)).fingerprint()
    assert first == again != other


@pytest.mark.parametrize(("backbone", "last"), [("resnet18", "bn2"), ("wide_resnet50_2", "bn3")])
def test_random_backbone_starts_each_residual_block_at_its_shortcut(backbone, last):
    # timm's (so anomalib's) initialisation: without it random features lose PatchCore 0.2 image AUROC on real photos
    model = build_backbone(backbone, None, 0)
    blocks = [block for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for block in stage]
    assert all(torch.count_nonzero(getattr(block, last).weight) == 0 for block in blocks)
    assert all(torch.all(block.bn1.weight == 1) for block in blocks)  # the other norms keep their ones


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_from_a_local_file(tmp_path, suffix):
    from safetensors.torch import save_file

    source = build_backbone("resnet18", None, 3)
    source.layer3[0].bn2.weight.data.fill_(0.5)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}  # a headless checkpoint
    path = tmp_path / f"r18{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    loaded = build_backbone("resnet18", str(path), 0)
    assert torch.equal(loaded.layer3[0].conv1.weight, source.layer3[0].conv1.weight)
    # a file's norms replace the zero start of random weights
    assert torch.all(loaded.layer3[0].bn2.weight == 0.5)
    with pytest.raises(DefectkitError, match="does not fit resnet50"):
        build_backbone("resnet50", str(path), 0)


def test_weight_errors_name_the_fix(monkeypatch):
    with pytest.raises(DefectkitError, match="IMAGENET1K_V1"):
        build_backbone("resnet18", "IMAGENET_V9", 0)
    with pytest.raises(DefectkitError, match="not a torchvision model"):
        build_backbone("resnet19", None, 0)

    def offline(self, *args, **kwargs):
        raise URLError("no network")

    from torchvision.models._api import WeightsEnum

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(DefectkitError, match="weights: null"):
        build_backbone("resnet18", "IMAGENET1K_V1", 0)


def test_checkpoint_round_trip_scores_the_same(tmp_path):
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    fitted = PatchKNNModel(RANDOM)
    fitted.fit([images[:2]], coreset_ratio=0.5, projection=32)
    assert fitted.bank.shape == (64, 384) and fitted.train_images == 2
    fitted.save(tmp_path / "bank.safetensors")
    loaded = PatchKNNModel.load(tmp_path / "bank.safetensors")
    assert loaded.settings == RANDOM and loaded.train_images == 2
    for image_score in ("map_max", "patchcore"):
        a, b = fitted.score(images, image_score=image_score), loaded.score(images, image_score=image_score)
        assert a.maps.shape == (3, 64, 64) and torch.equal(a.maps, b.maps)
        assert torch.equal(a.image_scores, b.image_scores)
    # a training image's patches are (nearly) in the bank; a new image's are not
    scores = fitted.score(images, blur_sigma=0).image_scores
    assert scores[2] > scores[:2].max()


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"unet.weight": torch.zeros(2)}, str(tmp_path / "unet.safetensors"))
    with pytest.raises(DefectkitError, match="not a patch_knn memory bank"):
        PatchKNNModel.load(tmp_path / "unet.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DefectkitError, match="cannot read"):
        PatchKNNModel.load(tmp_path / "junk.safetensors")
