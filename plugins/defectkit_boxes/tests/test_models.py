"""The torchvision families build offline from a name, train one step, and take a new class head."""

import pytest
import torch

from defectkit_boxes.models import LoadedBoxModel, _replace_classifier, build_model, set_inference


@pytest.mark.parametrize(
    "builder", ["fasterrcnn_mobilenet_v3_large_320_fpn", "retinanet_resnet50_fpn", "fcos_resnet50_fpn"]
)
def test_named_builders_train_and_take_a_class_head_for_our_classes(builder):
    from torchvision.models import detection

    torch.manual_seed(0)
    meta = {"model": builder, "weights": None, "weights_backbone": None, "classes": ["a", "b"], "image_size": 64}
    model = build_model(meta, pretrained=True)  # no weights named: random, nothing fetched
    images = [torch.rand(3, 64, 64), torch.rand(3, 48, 64)]
    targets = [
        {"boxes": torch.tensor([[4.0, 4.0, 30.0, 20.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)},  # an image without defects
    ]
    losses = model.train()(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    # the path a COCO model takes with weights: named (91 classes), without the download
    coco = getattr(detection, builder)(weights=None, weights_backbone=None, num_classes=91, min_size=64, max_size=64)
    _replace_classifier(coco, 3)
    set_inference(coco, 0.0, 50)  # every box, so that the labels below are not an empty list
    loaded = LoadedBoxModel(coco.eval(), ["a", "b"], meta)
    out = loaded.predict([(image * 255).to(torch.uint8) for image in images], "cpu")
    # 0-based classes of ours only: the background index (which RetinaNet and FCOS also score) never shows
    assert len(out) == 2 and all(len(o["labels"]) and set(o["labels"].tolist()) <= {0, 1} for o in out)
