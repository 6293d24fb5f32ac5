"""`tinyfleet models compress`: Keras model or built-in task -> validated int8 `.tflite`, with a report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

TASKS = ("vibration", "gestures", "digits")


def compress_command(
    out: Path = typer.Option(..., "--out", help="Where to write the int8 .tflite."),
    task: str = typer.Option("", help=f"Train on a built-in data set first: {', '.join(TASKS)}."),
    keras_file: Path | None = typer.Option(None, "--keras", help="A saved Keras model to compress."),
    data: Path | None = typer.Option(None, help="With --keras: an .npz with arrays x and y."),
    prune: float = typer.Option(0.0, help="Target weight sparsity, e.g. 0.5 (0 = no pruning)."),
    distill_width: int = typer.Option(0, help="Distill into a student of this width (0 = no)."),
    epochs: int = typer.Option(10, help="Training epochs (fine-tuning uses a third)."),
    samples: int = typer.Option(2000, help="Samples generated for a built-in task."),
    verbose: bool = typer.Option(False, "--verbose", help="Show TensorFlow's own logging."),
) -> None:
    """Quantize to int8 (and optionally prune and distill); report size, accuracy and arena."""
    console = Console()
    if bool(task) == bool(keras_file):
        raise typer.BadParameter("give exactly one of --task or --keras")
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

    table = Table(title=f"compressed: {' -> '.join(result.steps)}")
    for column in ("", "size (bytes)", "accuracy", "TFLM arena (bytes)"):
        table.add_column(column, justify="right")
    for label, m in (("float32", result.before), ("int8", result.after)):
        table.add_row(label, f"{m.size_bytes:,}", f"{m.accuracy:.1%}", f"{m.arena_bytes:,}")
    console.print(table)
    console.print(f"weight sparsity {result.sparsity:.1%}; {check.summary()}")
    console.print(f"wrote {out}")
