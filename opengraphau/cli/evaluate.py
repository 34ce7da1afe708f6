"""`opengraphau evaluate`: score predictions against AU labels, print the F1 table, write
evaluation.csv / .json / .png and pr_curves.png, and with --calibrate thresholds.json.

The model runs on the labelled images and frames through the normal run (the same flags, the
same results folder), or an existing results folder is scored as it is (--predictions DIR).
Exit status: 0 scored, 2 a usage problem or a label file that cannot be trusted (one line naming
the file and line), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .args import build_parser, to_options
from .main import UsageError, ctrl_c, guarded

if TYPE_CHECKING:
    from ..evaluation import Labels
    from ..options import Options


def build_evaluate_parser(prog: str) -> argparse.ArgumentParser:
    """The run's flags (they apply when the model runs), and the evaluation's."""
    p = build_parser(prog)
    p.description = (
        "Score AU predictions against labels: F1 as the reference computes it, accuracy, "
        "precision, recall, ROC AUC, average precision; optionally calibrate per-AU thresholds."
    )
    p.set_defaults(exp_name="evaluate")
    for action in p._actions:  # the labels name the inputs; exporting is no evaluation
        if action.dest in ("input", "export_onnx"):
            action.help = argparse.SUPPRESS
    e = p.add_argument_group("evaluation (see docs/evaluate.md)")
    e.add_argument(
        "--labels",
        metavar="CSV",
        help="labels as CSV: file[,frame][,face_id][,subject],AU1,AU12,... (1/0, -1 or empty: "
        "not labelled)",
    )
    e.add_argument(
        "--image-list",
        metavar="FILE",
        help="the reference's list format: image paths, one a line (with --label-list)",
    )
    e.add_argument(
        "--label-list",
        metavar="FILE",
        help="the reference's list format: 41 space-separated 1/0/-1 values a line",
    )
    e.add_argument(
        "--root",
        metavar="DIR",
        help="folder the labelled paths are relative to (default: the label or list file's folder)",
    )
    e.add_argument(
        "--positive-from",
        type=int,
        metavar="N",
        help="the CSV holds intensities 0-5; N or more counts as present (DISFA: 2)",
    )
    e.add_argument(
        "--predictions",
        metavar="DIR",
        help="score this results folder instead of running the model (evaluation files are "
        "written there unless --output-dir is given)",
    )
    e.add_argument(
        "--calibrate",
        action="store_true",
        help="choose per-AU thresholds that maximise F1, with cross-validated F1; writes "
        "thresholds.json for --thresholds",
    )
    e.add_argument(
        "--folds", type=int, default=5, metavar="K", help="cross-validation folds (default 5)"
    )
    e.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="resamples of the subjects for 95%% intervals (default 1000; 0: none)",
    )
    e.add_argument("--seed", type=int, default=0, help="for the bootstrap and the folds")
    return p


def main(argv: Sequence[str] | None = None, *, prog: str = "opengraphau evaluate") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_evaluate_parser(prog)
    args = parser.parse_args(argv)
    return guarded(prog, lambda: _evaluate(args, argv), parser=parser, argv=argv)


def _check(args: argparse.Namespace) -> None:
    if args.input:
        raise UsageError("--input is not used: the labels name the images and videos")
    if args.export_onnx:
        raise UsageError("--export-onnx is not an evaluation; run it without 'evaluate'")
    if args.labels and (args.image_list or args.label_list):
        raise UsageError("give either --labels CSV or --image-list with --label-list, not both")
    if bool(args.image_list) != bool(args.label_list):
        raise UsageError("--image-list and --label-list go together")
    if not (args.labels or args.image_list):
        raise UsageError("give --labels CSV, or --image-list FILE --label-list FILE")
    if args.positive_from is not None and not args.labels:
        raise UsageError("--positive-from applies to a --labels CSV")
    if args.folds < 2:
        raise UsageError(f"--folds {args.folds}: cross-validation needs at least 2 folds")
    if args.bootstrap < 0:
        raise UsageError(f"--bootstrap {args.bootstrap}: must be 0 (none) or more")
    if args.predictions and args.untrained:
        raise UsageError("--untrained runs the model; --predictions scores results as they are")


def _evaluate(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ..evaluation import (
        evaluate,
        format_table,
        read_label_lists,
        read_labels,
        run_calibration,
        write_outputs,
    )
    from .report import terminal_text

    _check(args)
    if args.labels:
        labels = read_labels(args.labels, root=args.root, positive_from=args.positive_from)
    else:
        labels = read_label_lists(args.image_list, args.label_list, root=args.root)
    if args.predictions:
        folder = Path(args.predictions)
        out = Path(args.output_dir) if args.output_dir else folder
        # The Options a run would have check --threshold and read --thresholds.
        cuts = to_options(_with_inputs(args, [args.predictions]), argv).au_thresholds
    else:
        options = _run_model(args, argv, labels)
        if options is None:
            return 130
        folder = out = options.output_dir
        cuts = options.au_thresholds
    result = evaluate(folder, labels, thresholds=cuts, bootstrap=args.bootstrap, seed=args.seed)
    calibration = (
        run_calibration(result, folds=args.folds, seed=args.seed) if args.calibrate else None
    )
    title = f"{Path(labels.source).name} vs {folder}"
    names = write_outputs(result, out, calibration=calibration, title=title)
    for line in format_table(result, calibration).splitlines():
        print(terminal_text(line))
    print(f"wrote {', '.join(names)} to {terminal_text(str(out))}/")
    if calibration is not None:
        print(
            "use them: opengraphau --thresholds "
            f"{terminal_text(str(out / 'thresholds.json'))} ... (AUs without positives keep "
            f"{cuts.default:g})"
        )
    return 0


def _with_inputs(args: argparse.Namespace, inputs: list[str]) -> argparse.Namespace:
    copy = argparse.Namespace(**vars(args))
    copy.input = inputs
    return copy


def _run_model(args: argparse.Namespace, argv: Sequence[str], labels: Labels) -> Options | None:
    """The normal run over the labelled files (each once); its Options, or None when Ctrl-C
    stopped it. A labelled file that does not exist stops everything first."""
    from ..errors import InputError
    from ..jobs import run
    from .report import TerminalReporter, format_summary

    paths = labels.table["path"].tolist()
    for row, path in enumerate(paths):
        if not os.path.isfile(path):
            raise InputError(
                f"{labels.table['file'].iloc[row]} not found (looked for {path}); check --root",
                param="labels",
                value=labels.where(row),
            )
    reporter = TerminalReporter(quiet=args.quiet)
    with ctrl_c(reporter):
        options = to_options(_with_inputs(args, list(dict.fromkeys(paths))), argv)
        stats = run(options, reporter)
        print(format_summary(stats))
    return None if stats.interrupted else options
