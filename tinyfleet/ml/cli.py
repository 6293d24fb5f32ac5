"""`tinyfleet models compress`: Keras or ONNX model, or built-in task -> validated int8 `.tflite` + report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

TASKS = ("vibration", "gestures", "digits")


def compress_command(
    out: Path = typer.Option(..., "--out", help="Where to write the int8 .tflite."),
    task: str = typer.Option("", help=f"Train on a built-in data set first: {', '.join(TASKS)}."),
    keras_file: Path | None = typer.Option(None, "--keras", help="A saved Keras model to compress."),
    onnx_file: Path | None = typer.Option(
        None, "--onnx", help="An ONNX model to convert (NCHW maps become NHWC on the device)."
    ),
    data: Path | None = typer.Option(
        None,
        help="An .npz with arrays x and y (with --onnx: x in ONNX layout calibrates; y optional).",
    ),
    prune: float = typer.Option(0.0, help="Target weight sparsity, e.g. 0.5 (0 = no pruning)."),
    distill_width: int = typer.Option(0, help="Distill into a student of this width (0 = no)."),
    epochs: int = typer.Option(10, help="Training epochs (fine-tuning uses a third)."),
    samples: int = typer.Option(2000, help="Samples generated for a built-in task."),
    verbose: bool = typer.Option(False, "--verbose", help="Show TensorFlow's own logging."),
) -> None:
    """Quantize to int8 (and optionally prune and distill); report size, accuracy and arena."""
    console = Console()
    if onnx_file is not None:
        if task or keras_file or prune or distill_width:
            raise typer.BadParameter("--onnx takes no --task, --keras, --prune or --distill-width")
        compress_onnx_command(onnx_file, data, out, verbose, console)
        return
    if bool(task) == bool(keras_file):
        raise typer.BadParameter("give exactly one of --task, --keras or --onnx")
    if task and task not in TASKS:
        raise typer.BadParameter(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if keras_file and (data is None or not data.is_file() or not keras_file.exists()):
        raise typer.BadParameter("--keras needs an existing model file and --data pointing to an .npz")
    if not 0.0 <= prune < 1.0:
        raise typer.BadParameter("--prune must be in [0, 1)")

    from tinyfleet.ml.quiet import quiet_tensorflow

    console.print("training and compressing...")
    with quiet_tensorflow(verbose):
        from tinyfleet.ml import pipeline, validate

        if keras_file:
            assert data is not None
            result = pipeline.compress_keras_file(
                keras_file, data, prune_to=prune, distill_width=distill_width, epochs=max(2, epochs // 3)
            )
        else:
            result = pipeline.compress_task(
                task, samples=samples, epochs=epochs, prune_to=prune, distill_width=distill_width
            )
        check = validate.validate(result.tflite)
    out.write_bytes(result.tflite)
    _report(console, result, ("float32", "int8"))
    console.print(f"weight sparsity {result.sparsity:.1%}; {check.summary()}")
    console.print(f"wrote {out}")


def _report(console: Console, result: Any, labels: tuple[str, str]) -> None:
    table = Table(title=f"compressed: {' -> '.join(result.steps)}")
    for column in ("", "size (bytes)", "accuracy", "TFLM arena (bytes)"):
        table.add_column(column, justify="right")
    for label, m in zip(labels, (result.before, result.after), strict=True):
        table.add_row(label, f"{m.size_bytes:,}", f"{m.accuracy:.1%}", f"{m.arena_bytes:,}")
    console.print(table)


def onnx_to_tflite(onnx_file: Path, data: Path | None, verbose: bool, console: Console) -> tuple[Any, Any]:
    """Convert and validate; on any problem print one line and exit 1. Returns (result, validation)."""
    if data is None or not data.is_file() or not onnx_file.is_file():
        raise typer.BadParameter("--onnx needs an existing .onnx file and --data pointing to an .npz")
    from tinyfleet.ml.quiet import quiet_tensorflow

    console.print("converting ONNX to int8...")
    error = ""
    with quiet_tensorflow(verbose):
        from tinyfleet.ml import onnx_pipeline, validate

        try:
            result = onnx_pipeline.compress_onnx(onnx_file, data)
        except onnx_pipeline.OnnxImportError as exc:  # inside the block: TF's log is not dumped for it
            error = str(exc)
        else:
            check = validate.validate(result.tflite)
    if error:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {escape(error)}", highlight=False)
        raise typer.Exit(1)
    if check.engine_checked and not check.engine_bit_exact:
        Console(stderr=True, soft_wrap=True).print(
            f"[red]error:[/] {escape(check.summary())}", highlight=False
        )
        raise typer.Exit(1)
    return result, check


def compress_onnx_command(
    onnx_file: Path, data: Path | None, out: Path, verbose: bool, console: Console
) -> None:
    result, check = onnx_to_tflite(onnx_file, data, verbose, console)
    out.write_bytes(result.tflite)
    notes = result.notes
    _report(console, result, (f"ONNX float32 ({notes['runner']})", "int8"))
    console.print(
        f"int8 top-1 agrees with ONNX on {notes['top1_agreement']:.1%} of held-out rows (accuracy vs"
        f" {notes['labels']}); converted in {notes['convert_seconds']:.1f} s; {check.summary()}"
    )
    console.print(f"wrote {out}")
