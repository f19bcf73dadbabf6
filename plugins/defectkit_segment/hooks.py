"""Hook implementations of the segment plugin. Light: imported by ``defectkit plugins`` and ``--help``."""

from defectkit import Component, Consumes, hookimpl


@hookimpl
def defectkit_trainers() -> list[Component]:
    return [
        Component(
            kind="trainer",
            name="segmenter",
            produces=("segmenter",),
            consumes=(Consumes("generated_images", required=False),),
            factory="defectkit_segment.train:SegmenterTrainer",
            config="defectkit_segment.config:SegmenterConfig",
            summary="supervised few-shot defect segmentation: a small U-Net on real (and generated) image-mask pairs",
            extra="segment",
        ),
        Component(
            kind="trainer",
            name="segment_compare",
            produces=("comparison",),
            consumes=(
                Consumes("generated_images"),
                Consumes("anomaly_maps", required=False),
            ),
            factory="defectkit_segment.compare:SegmentCompare",
            config="defectkit_segment.config:SegmentCompareConfig",
            summary="closes the loop for segmentation: real pairs against real + each generator's pairs, over seeds",
            extra="segment",
        ),
    ]


@hookimpl
def defectkit_detectors() -> list[Component]:
    return [
        Component(
            kind="detector",
            name="segmenter",
            produces=("anomaly_maps", "scores"),
            consumes=(Consumes("segmenter", producers=("segmenter",)),),
            factory="defectkit_segment.train:SegmenterDetector",
            config="defectkit_segment.config:SegmentDetectConfig",
            summary="per-pixel defect probability of a trained segmenter, in the eval-maps layout, plus IoU and Dice",
            extra="segment",
        )
    ]


@hookimpl
def defectkit_generators() -> list[Component]:
    return [
        Component(
            kind="generator",
            name="copy_paste",
            produces=("generated_images",),
            consumes=(),
            factory="defectkit_segment.copy_paste:CopyPaste",
            config="defectkit_segment.config:CopyPasteConfig",
            summary="the baseline every generator must beat: real defects cut out by their masks, pasted into good images",
        )
    ]
