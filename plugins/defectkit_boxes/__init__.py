"""Box detectors (torchvision, ultralytics YOLO), box metrics and the detection accuracy of generated images."""
