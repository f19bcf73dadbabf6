"""``defectkit serve RUN_DIR``: the web UI of a finished run. Light: gradio is imported inside the command."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("serve")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="address to listen on; 0.0.0.0 makes the UI reachable from other machines",
)
@click.option("--port", type=click.IntRange(1, 65535), help="port (default: 7860, or the next free one)")
@click.option("--share", is_flag=True, help="also open a public gradio.live link (off unless asked)")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1 ... or auto")
@click.option(
    "--max-upload-mb",
    type=click.FloatRange(0.1, 1024),
    default=20.0,
    show_default=True,
    help="largest uploaded file accepted",
)
def serve_command(run_dir: Path, host: str, port: int | None, share: bool, device: str, max_upload_mb: float) -> None:
    """Open a web UI on a run: inspect images (heat map, score, verdict at a threshold you move), generate
    defects with the run's generators, browse its metrics and report."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        from defectkit.errors import DefectkitError

        raise DefectkitError("defectkit serve needs the web UI's extra (gradio): pip install 'defectkit[serve]'") from None
    from defectkit_serve.app import ServeOptions, build_app, find_servable, launch
    from defectkit_serve.uploads import UploadLimits

    servable = find_servable(run_dir)  # a folder that is not a run: one line, exit 2, before any model loads
    check_device(device)
    options = ServeOptions(device=device, limits=UploadLimits(max_bytes=int(max_upload_mb * 1024 * 1024)))
    click.echo(f"defectkit serve: loading {servable.run.run_dir} ...")
    demo = build_app(servable, options)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"defectkit serve: listening on {host}: anyone who can reach this machine can use the UI")
    try:
        _, url, share_url = launch(demo, servable, options, host=host, port=port, share=share)
    except OSError as exc:  # gradio's "Cannot find empty port", an address that is not this machine's
        from defectkit.errors import DefectkitError

        where = f"{host}:{port}" if port else f"{host} (ports 7860 to 7959)"
        problem = "the port is in use" if "empty port" in str(exc) else str(exc)
        raise DefectkitError(
            f"defectkit serve: cannot listen on {where}: {problem}; pass another --port or --host"
        ) from None
    click.echo(f"defectkit serve: {url}  (Ctrl-C to stop)")
    if share_url:
        click.echo(f"defectkit serve: public link {share_url} (valid for a week; anyone with it can use the UI)")
    try:
        demo.block_thread()
    finally:
        demo.close()


def check_device(device: str) -> None:
    """A device this machine has, or one clear line (not a CUDA traceback at the first model load)."""
    if device == "auto" or device == "cpu":
        return  # torch stays unimported until a model loads: serve answers sooner
    import torch

    from defectkit.errors import DefectkitError

    try:
        wanted = torch.device(device)
    except RuntimeError:
        raise DefectkitError(f"--device {device}: not a torch device; use auto, cpu, cuda or cuda:N") from None
    if wanted.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (wanted.index or 0) >= count:
            raise DefectkitError(f"--device {device}: this machine has {count} CUDA device(s); use auto or cpu")
