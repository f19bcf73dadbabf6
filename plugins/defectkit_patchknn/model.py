"""PatchCore's pieces: frozen ResNet patch features, a greedy k-center coreset, nearest-neighbour anomaly maps.

Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022.
Everything works on batches of tensors on one device; nothing loops over patches
or pixels in Python.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from defectkit.errors import DefectkitError
from defectkit.io import atomic_path
from defectkit.tensorfile import load_tensors

STAGES = ("layer1", "layer2", "layer3", "layer4")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".safetensors")
#: bumped when the checkpoint layout changes; a checkpoint with another value is refused
FORMAT_VERSION = "1"
#: largest query-by-bank distance block computed at once (floats): 64 MiB in float32
DISTANCE_BLOCK = 1 << 24


@dataclass(frozen=True)
class FeatureSettings:
    """What fixes the patch features; saved with the memory bank, which is only valid for them."""

    backbone: str
    weights: str | None
    layers: tuple[str, ...]
    image_size: int
    seed: int

    @classmethod
    def from_config(cls, config) -> FeatureSettings:
        # stage order, not the user's order: the concatenation must not depend on how the list was written
        layers = tuple(sorted(set(config.layers), key=STAGES.index))
        return cls(config.backbone, config.weights, layers, config.image_size, config.seed)


def build_backbone(backbone: str, weights: str | None, seed: int) -> nn.Module:
    """A torchvision ResNet-family model with ``weights``: enum name, local file, or ``None`` (random, seeded)."""
    import torchvision

    if backbone not in torchvision.models.list_models():
        known = [m for m in torchvision.models.list_models() if m.startswith(("resnet", "wide_resnet", "resnext"))]
        raise DefectkitError(f"patch_knn: {backbone!r} is not a torchvision model; choose one of {', '.join(known)}")
    if weights is None:
        # fork_rng: the seeded initialisation must not change the run's own random stream
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # the last batch norm of each residual block starts at zero (as timm, and so anomalib, builds it):
            # every block is then the identity plus its shortcut, and random features stay local and
            # smooth; with torchvision's default init, random stacked blocks scramble the patch features
            # (random wide_resnet50_2 on the real brick tiles: image AUROC 0.74 -> 0.94, docs/patchknn.md)
            return torchvision.models.get_model(backbone, weights=None, zero_init_residual=True)
    if weights.endswith(WEIGHT_FILE_SUFFIXES):
        model = torchvision.models.get_model(backbone, weights=None)
        _load_weight_file(model, Path(weights), backbone)
        return model
    try:
        torchvision.models.get_model_weights(backbone).verify(weights)
    except (KeyError, ValueError):
        names = ", ".join(w.name for w in torchvision.models.get_model_weights(backbone))
        raise DefectkitError(
            f"patch_knn: {weights!r} is not a weights name of {backbone}; choose one of {names}, DEFAULT, "
            "a local .pth/.safetensors file, or null for random weights"
        ) from None
    try:
        return torchvision.models.get_model(backbone, weights=weights)
    except OSError as error:  # URLError is an OSError: no network, a proxy, a full disk
        raise DefectkitError(
            f"patch_knn: could not fetch the {backbone} {weights} weights ({error}); offline, put the file in "
            "$TORCH_HOME/hub/checkpoints, give a local file path as weights, or use weights: null (random features)"
        ) from None


def _load_weight_file(model: nn.Module, path: Path, backbone: str) -> None:
    if not path.is_file():
        raise DefectkitError(f"patch_knn: weights file {path} does not exist")
    state = load_tensors(path)
    try:
        missing, _ = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches are raised even with strict=False
        raise DefectkitError(f"patch_knn: {path} does not fit {backbone}: {str(error).splitlines()[-1]}") from None
    # a classification head (fc) of another size or none at all is fine: only the stages are used
    needed = [key for key in missing if not key.startswith("fc.")]
    if needed:
        raise DefectkitError(f"patch_knn: {path} is not a {backbone} state dict: it lacks {', '.join(needed[:3])} ...")


class PatchFeatureExtractor(nn.Module):
    """ImageNet-normalised images in [0, 1] -> locally aware patch features on the earliest stage's grid.

    As in PatchCore: each stage's map is average-pooled over 3x3 neighbourhoods
    (a patch sees its surroundings), later stages are bilinearly upsampled to the
    earliest one's grid, and the maps are concatenated along channels.
    """

    def __init__(self, model: nn.Module, layers: tuple[str, ...]) -> None:
        super().__init__()
        self.layers = layers
        self.stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        last = max(STAGES.index(name) for name in layers)
        # stages after the last one used are dropped: no compute, no memory
        self.stages = nn.ModuleDict({name: getattr(model, name) for name in STAGES[: last + 1]})
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem((images - self.mean) / self.std)
        maps = []
        for name, stage in self.stages.items():
            x = stage(x)
            if name in self.layers:
                maps.append(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        grid = maps[0].shape[-2:]
        maps = [maps[0]] + [F.interpolate(m, size=grid, mode="bilinear", align_corners=False) for m in maps[1:]]
        return torch.cat(maps, dim=1)

    def fingerprint(self) -> str:
        """A checksum of the weights in use: a rebuilt backbone must match the one the bank was made with."""
        total = sum(float(p.detach().double().abs().sum()) for p in self.parameters())
        return f"{total:.9e}"


def greedy_coreset(features: torch.Tensor, count: int, projection: int = 128, seed: int = 0) -> torch.Tensor:
    """Indices of ``count`` rows of ``features`` chosen by greedy k-center selection (PatchCore, Alg. 1).

    Each step adds the row farthest from those chosen so far, so the chosen rows
    cover the set with a radius at most twice the optimal one. Distances are
    measured after a random Gaussian projection to ``projection`` dimensions
    (Johnson-Lindenstrauss; 0 or a larger value keeps the features as they are),
    as PatchCore does for speed. The loop is over chosen rows only, each step
    one vectorised pass over all rows, with no host synchronisation.
    """
    n = features.shape[0]
    if not 1 <= count <= n:
        raise ValueError(f"coreset size must be in 1..{n}, got {count}")
    generator = torch.Generator().manual_seed(seed)
    points = features.float()
    if 0 < projection < points.shape[1]:
        matrix = torch.randn(points.shape[1], projection, generator=generator) / math.sqrt(projection)
        points = points @ matrix.to(points.device)
    chosen = torch.empty(count, dtype=torch.long, device=points.device)
    chosen[0] = torch.randint(n, (1,), generator=generator).item()
    nearest = torch.sum((points - points[chosen[0]]) ** 2, dim=1)
    for i in range(1, count):
        index = torch.argmax(nearest)
        chosen[i] = index
        nearest = torch.minimum(nearest, torch.sum((points - points[index]) ** 2, dim=1))
    return chosen


def nearest_neighbours(queries: torch.Tensor, bank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance of each query row to its nearest bank row, and that row's index.

    Computed in blocks of queries so that the distance matrix never exceeds
    :data:`DISTANCE_BLOCK` elements, whatever the bank size.
    """
    rows = max(1, DISTANCE_BLOCK // max(1, bank.shape[0]))
    distances, indices = [], []
    for start in range(0, queries.shape[0], rows):
        block = torch.cdist(queries[start : start + rows], bank)
        distance, index = block.min(dim=1)
        distances.append(distance)
        indices.append(index)
    return torch.cat(distances), torch.cat(indices)


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur a batch of maps ``[B, H, W]`` with PatchCore's kernel (size 2*round(4 sigma)+1, reflected borders)."""
    if sigma <= 0:
        return maps
    from torchvision.transforms.functional import gaussian_blur as blur

    size = 2 * int(4 * sigma + 0.5) + 1
    # reflect padding needs a border narrower than the map
    size = min(size, 2 * (min(maps.shape[-2:]) // 2) - 1)
    return blur(maps.unsqueeze(1), kernel_size=[size, size], sigma=[sigma, sigma]).squeeze(1)


@dataclass
class Scores:
    """One batch's results: blurred maps ``[B, S, S]`` and image scores ``[B]`` (on the model's device)."""

    maps: torch.Tensor
    image_scores: torch.Tensor


class PatchKNNModel:
    """A feature extractor and a memory bank of normal patch features."""

    def __init__(self, settings: FeatureSettings, device: torch.device | str = "cpu") -> None:
        self.settings = settings
        self.device = torch.device(device)
        backbone = build_backbone(settings.backbone, settings.weights, settings.seed)
        self.extractor = PatchFeatureExtractor(backbone, settings.layers).to(self.device)
        self.bank: torch.Tensor | None = None
        self.train_images = 0

    # -- features ---------------------------------------------------------------------

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, S, S]`` in [0, 1] -> patch features ``[B, h, w, C]``."""
        return self.extractor(images.to(self.device, torch.float32)).permute(0, 2, 3, 1)

    # -- fitting ----------------------------------------------------------------------

    def fit(self, batches, coreset_ratio: float, projection: int) -> None:
        """Build the memory bank from batches of good images (``[B, 3, S, S]`` tensors in [0, 1])."""
        patches = []
        for images in batches:
            patches.append(self.features(images).flatten(0, 2))
            self.train_images += images.shape[0]
        features = torch.cat(patches)
        count = max(1, round(features.shape[0] * coreset_ratio))
        if count < features.shape[0]:
            features = features[greedy_coreset(features, count, projection, self.settings.seed)]
        self.bank = features.contiguous()

    # -- scoring ----------------------------------------------------------------------

    def score(
        self, images: torch.Tensor, blur_sigma: float = 4.0, image_score: str = "map_max", neighbours: int = 9
    ) -> Scores:
        """Anomaly maps at the working size and image scores for a batch of images in [0, 1]."""
        if self.bank is None:
            raise RuntimeError("fit() or load() the memory bank before scoring")
        features = self.features(images)
        batch, height, width, channels = features.shape
        flat = features.reshape(batch, height * width, channels)
        distance, index = nearest_neighbours(flat.reshape(-1, channels), self.bank)
        distance, index = distance.view(batch, -1), index.view(batch, -1)
        patch_maps = distance.view(batch, 1, height, width)
        size = self.settings.image_size
        maps = F.interpolate(patch_maps, size=(size, size), mode="bilinear", align_corners=False).squeeze(1)
        maps = gaussian_blur(maps, blur_sigma)
        if image_score == "patchcore":
            scores = self._reweighted_scores(flat, distance, index, neighbours)
        else:
            scores = maps.flatten(1).amax(dim=1)
        return Scores(maps=maps, image_scores=scores)

    def _reweighted_scores(
        self, flat: torch.Tensor, distance: torch.Tensor, index: torch.Tensor, neighbours: int
    ) -> torch.Tensor:
        """PatchCore's eq. 7: the largest patch distance, damped where its nearest bank entry sits in a dense region.

        The weight is one minus the softmax weight of that bank entry among its
        own ``neighbours`` nearest bank entries, seen from the test patch.
        """
        rows = torch.arange(flat.shape[0], device=flat.device)
        worst = distance.argmax(dim=1)
        test_patch = flat[rows, worst]
        anchor = self.bank[index[rows, worst]]
        k = min(neighbours, self.bank.shape[0])
        support = torch.cdist(anchor, self.bank).topk(k, dim=1, largest=False).indices
        spread = torch.linalg.vector_norm(test_patch.unsqueeze(1) - self.bank[support], dim=2)
        weight = 1 - torch.softmax(spread, dim=1)[:, 0]
        return weight * distance[rows, worst]

    # -- persistence --------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the memory bank and the settings it is valid for (safetensors, atomically)."""
        from safetensors.torch import save_file

        metadata = {
            "format": "defectkit_patchknn",
            "format_version": FORMAT_VERSION,
            "settings": json.dumps(asdict(self.settings)),
            "fingerprint": self.extractor.fingerprint(),
            "train_images": str(self.train_images),
        }
        with atomic_path(path) as tmp:
            save_file({"memory_bank": self.bank.cpu()}, str(tmp), metadata=metadata)

    @classmethod
    def load(cls, path: Path, device: torch.device | str = "cpu") -> PatchKNNModel:
        """Rebuild the extractor a bank was made with and load the bank; refuse anything else."""
        from safetensors import SafetensorError, safe_open

        hint = "point the detect step's `inputs: {checkpoint: STEP_ID}` at a patch_knn train step"
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                if metadata.get("format") != "defectkit_patchknn" or "memory_bank" not in handle.keys():
                    raise DefectkitError(f"patch_knn: {path} is not a patch_knn memory bank; {hint}")
                bank = handle.get_tensor("memory_bank")
        except (SafetensorError, OSError) as error:
            raise DefectkitError(f"patch_knn: cannot read {path} as a memory bank ({error}); {hint}") from None
        if metadata.get("format_version") != FORMAT_VERSION:
            raise DefectkitError(
                f"patch_knn: {path} has format version {metadata.get('format_version')}, this plugin reads "
                f"{FORMAT_VERSION}; rerun the patch_knn train step"
            )
        raw = json.loads(metadata["settings"])
        settings = FeatureSettings(**{**raw, "layers": tuple(raw["layers"])})
        model = cls(settings, device)
        if not math.isclose(float(model.extractor.fingerprint()), float(metadata["fingerprint"]), rel_tol=1e-7):
            raise DefectkitError(
                f"patch_knn: the {settings.backbone} rebuilt from {path}'s settings differs from the one its bank "
                "was made with (another torch/torchvision version, or a changed weights file); rerun the train step"
            )
        model.bank = bank.to(model.device)
        model.train_images = int(metadata.get("train_images", 0))
        return model
