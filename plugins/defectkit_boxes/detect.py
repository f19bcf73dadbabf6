"""The box detect step (``torchvision_boxes``, and ``yolo`` through it): boxes for every image of a split, as the ``box_predictions`` artifact."""

from __future__ import annotations

from pathlib import Path

from defectkit.errors import DataError
from defectkit.overlays import pick_overlays
from defectkit_boxes.config import BoxDetectConfig
from defectkit_boxes.records import ground_truth, record, save_box_overlay, write_predictions

PREDICTIONS_DIR = "box_predictions"


class BoxDetector:
    """Runs the ``box_model`` artifact (or ``model:``) over ``split``; draws box overlays for the report."""

    def __init__(self, config: BoxDetectConfig | None = None) -> None:
        self.config = config or BoxDetectConfig()

    def detect(self, ctx) -> None:
        from defectkit_boxes.models import load_box_model, to_tensor

        c = self.config
        model_dir = Path(c.model) if c.model else ctx.artifact("box_model")
        loaded = load_box_model(model_dir, ctx.device)
        loaded.set_inference(c.score_threshold, c.max_detections)
        samples = ctx.samples(c.split)
        if not samples:
            raise DataError(f"torchvision_boxes detect: split {c.split!r} has no samples")
        out = ctx.step_dir / PREDICTIONS_DIR
        draw = set(pick_overlays([s.defect_type for s in samples], [s.label for s in samples], c.overlays))
        records = []
        # each process takes every n-th batch; the main process gathers the records and writes them
        accelerator = ctx.accelerator
        starts = list(range(0, len(samples), c.batch_size))[accelerator.process_index :: accelerator.num_processes]
        for start in ctx.progress(starts, total=len(starts), description="box detector"):
            batch = samples[start : start + c.batch_size]
            images = [s.load_image() for s in batch]
            outputs = loaded.predict([to_tensor(image) for image in images], ctx.device)
            for index, sample, image, prediction in zip(
                range(start, start + len(batch)), batch, images, outputs, strict=True
            ):
                records.append(record(sample.id, image.size, prediction, loaded.classes))
                if index in draw:
                    truth = (
                        ground_truth(sample, loaded.classes, f"torchvision_boxes detect ({c.split})")
                        if sample.boxes
                        else None
                    )
                    found = sum(int(s >= c.overlay_threshold) for s in prediction["scores"])
                    path = out / "overlays" / f"{index:04d}_{Path(sample.id).stem}.png"
                    save_box_overlay(
                        path,
                        image,
                        prediction,
                        loaded.classes,
                        c.overlay_threshold,
                        f"{sample.defect_type}: {found} found (red), {len(sample.boxes)} true (green)",
                        truth=truth,
                    )
                    ctx.add_figure(
                        path, f"{sample.id}: found boxes (red, score >= {c.overlay_threshold}) and true boxes (green)"
                    )
        if accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            records = gather_object(records)
        if ctx.is_main_process:
            order = {s.id: i for i, s in enumerate(samples)}
            records.sort(key=lambda r: order[r["id"]])
            info = {
                "classes": loaded.classes,
                "score_threshold": c.score_threshold,
                "model": str(model_dir),
                "split": c.split,
            }
            write_predictions(out, records, info)
            ctx.log_metrics({"images": len(records), "boxes": sum(len(r["boxes"]) for r in records)})
        ctx.add_artifact("box_predictions", out)
