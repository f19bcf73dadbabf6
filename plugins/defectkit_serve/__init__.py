"""``defectkit serve RUN_DIR``: a Gradio web UI to inspect images, generate defects and browse a run.

:mod:`.hooks` and :mod:`.cli` are light; gradio, torch and the detector plugins are imported when the
command runs (:mod:`.app`, :mod:`.inspectors`).
"""
