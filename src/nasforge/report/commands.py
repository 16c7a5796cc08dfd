"""The ``report``, ``compare``, ``draw`` and ``export`` subcommands of the CLI.

``register(subparsers)`` adds them to the ``nasforge`` parser; each handler takes the parsed
arguments and returns an exit code, raising ``NasforgeError`` subclasses for user errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nasforge.errors import ConfigError, GenomeError


def _parse_shape(text: str | None) -> tuple[int, int, int] | None:
    from nasforge.config import parse_shape

    return None if text is None else parse_shape(text)


def _check_study(path: str) -> None:
    if not Path(path).is_file():
        raise ConfigError(f"study {path} not found")


def cmd_report(args: argparse.Namespace) -> int:
    """Write the HTML report of one study."""
    from nasforge.report.html import write_report

    _check_study(args.study)
    out = Path(args.output or Path(args.study).with_suffix(".html"))
    write_report(args.study, out, top=args.top)
    print(f"report written to {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Write the HTML comparison of several studies."""
    from nasforge.report.html import write_compare

    for path in args.studies:
        _check_study(path)
    out = Path(args.output)
    write_compare(args.studies, out)
    print(f"comparison of {len(args.studies)} studies written to {out}")
    return 0


def cmd_draw(args: argparse.Namespace) -> int:
    """Draw a genome (from a JSON file or a study trial) to PNG, SVG, PDF or DOT."""
    from nasforge.report.draw import draw_to_file, genome_from_source

    src = genome_from_source(args.source, trial=args.trial, space_name=args.space,
                             width=args.width, input_shape=_parse_shape(args.input))
    try:
        drawing = draw_to_file(src, args.output)
    except GenomeError as exc:  # e.g. a cycle found while laying the genome out: name the file
        raise GenomeError(f"{args.source}: {exc}") from None
    how = "Graphviz" if drawing.graphviz or drawing.fmt == "dot" else (
        "text form (Graphviz `dot` not found)")
    print(f"{src.label}: {drawing.text}")
    print(f"drawn to {args.output} ({how})", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a trained network of a study as TorchScript, ONNX or a state_dict."""
    from nasforge.report.export import export_model

    _check_study(args.study)
    result = export_model(args.study, args.output, args.format, trial=args.trial,
                          data_dir=args.data_dir, opset=args.opset)
    meta = result.meta
    src = meta["source"]
    metrics = meta["metrics"]
    accs = f"val acc {metrics['val_acc']:.4f}" if metrics.get("val_acc") is not None else ""
    if metrics.get("test_acc") is not None:
        flip = meta.get("test_time_augmentation") == "flip"
        accs += (f", final test acc {metrics['test_acc']:.4f} (seed {metrics.get('final_seed')}"
                 f"{', flip-averaged' if flip else ''})")
        if metrics.get("test_acc_seeds", 0) > 1:
            accs += (f"; mean {metrics['test_acc_mean']:.4f} ± {metrics['test_acc_std']:.4f} "
                     f"over {metrics['test_acc_seeds']} seeds")
    print(f"trial {src['trial']} ({src['weights']} weights, width {meta['width']}, "
          f"{metrics['params']:,} params; {accs}) exported as {args.format} to {result.path}")
    if meta.get("test_time_augmentation") == "flip":  # what the file reproduces
        single = metrics.get("test_acc_single_view")
        print("test-time augmentation: " + (
            "the file averages each image and its mirror, as the test accuracy did; its "
            "outputs are log-probabilities" if args.format != "state_dict" else
            "the state_dict is the plain network"
            + ("" if single is None else f" (single view {single:.4f})")
            + "; average softmax(net(x)) and softmax(net(flip(x))) to reproduce the test "
            "accuracy"))
    if result.max_abs_diff is not None:
        print(f"reloaded and checked: max abs logit difference {result.max_abs_diff:.2e}")
    print(f"metadata (genome, normalisation, metrics) in {result.meta_path}")
    return 0


def register(subparsers: Any) -> None:
    """Add the report, compare, draw and export subcommands to ``subparsers``."""
    rep = subparsers.add_parser("report", help="write a self-contained HTML report of a study")
    rep.add_argument("study", help="STUDY.db")
    rep.add_argument("-o", "--output", default=None, help="HTML file (default: STUDY.html)")
    rep.add_argument("--top", type=int, default=5, help="architectures to draw (default 5)")
    rep.set_defaults(func=cmd_report)

    cmp_ = subparsers.add_parser("compare", help="compare several studies in one HTML report")
    cmp_.add_argument("studies", nargs="+", metavar="STUDY.db")
    cmp_.add_argument("-o", "--output", default="compare.html", help="HTML file")
    cmp_.set_defaults(func=cmd_compare)

    draw = subparsers.add_parser("draw", help="draw a genome as PNG, SVG, PDF or DOT")
    draw.add_argument("source", help="GENOME.json or STUDY.db")
    draw.add_argument("--trial", type=int, default=None,
                      help="trial number (with a study; default: the best trial)")
    draw.add_argument("-o", "--output", required=True, help="arch.png | arch.svg | arch.pdf | arch.dot")
    draw.add_argument("--width", type=int, default=None, help="channel width to annotate")
    draw.add_argument("--space", default=None, help="space of a genome file (default global)")
    draw.add_argument("--input", default=None, help="input shape to annotate, e.g. 1x28x28")
    draw.set_defaults(func=cmd_draw)

    exp = subparsers.add_parser("export", help="export a trained network (TorchScript, ONNX, state_dict)")
    exp.add_argument("study", help="STUDY.db")
    which = exp.add_mutually_exclusive_group()
    which.add_argument("--best", action="store_true", help="the best trial (default)")
    which.add_argument("--trial", type=int, default=None)
    exp.add_argument("--format", required=True, choices=["torchscript", "onnx", "state_dict"])
    exp.add_argument("-o", "--output", required=True, help="output file")
    exp.add_argument("--data-dir", default=None, help="where the study's data set is")
    exp.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    exp.set_defaults(func=cmd_export)
