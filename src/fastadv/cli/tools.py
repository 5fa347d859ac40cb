"""Maintainer tools: bench-train, bench-eval, gpu-check, lemma2, digitize, schema, copy. Each command's
parser beside its handler; the handlers call the library."""
from __future__ import annotations

from pathlib import Path

from fastadv.cli.common import add_config_args, study_of, config_of
from fastadv.errors import FastAdvError


def add_bench_train(sub) -> None:
    p = sub.add_parser("bench-train", help="training-step speed of each method and its ratio to FGSM")
    add_config_args(p)
    p.add_argument("--methods", nargs="+", default=["fgsm", "fgsm_rs", "gradalign", "gradalign_fd", "pgd", "free"],
                   help="variant labels of the params file (run as --scale/--experiment resolve them) or method names")
    p.add_argument("--iterations", type=int, default=20, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median, min, max reported)")
    p.add_argument("--csv", default=None, help="append the measurements to this CSV")
    p.add_argument("--layout", choices=("trained", "default"), default="trained",
                   help="trained: each method (a variant label where there is one) in the memory layout and double "
                        "backward its config trains it with; default: all in the default layout, native double "
                        "backward (default: %(default)s)")
    p.set_defaults(func=cmd_bench_train)


def cmd_bench_train(args) -> int:
    from fastadv.performance.benchmark import bench_train, scale_configs

    configs = None if args.resolved is not None else scale_configs(  # each as the scale trains it
        study_of(args), args.methods, args.experiment, args.eps, args.seed, args.sets)
    bench_train(config_of(args, "train"), args.methods, iterations=args.iterations, repeats=args.repeats,
                csv_out=args.csv, configs=configs, layout=args.layout)
    return 0


def add_bench_eval(sub) -> None:
    p = sub.add_parser("bench-eval", help="time PGD-50-10 with and without skipping broken points (ratio)")
    p.add_argument("--model", required=True)
    p.add_argument("--n-points", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median, min, max reported)")
    p.add_argument("--csv", default=None, help="append the measurement to this CSV")
    p.set_defaults(func=cmd_bench_eval)


def cmd_bench_eval(args) -> int:
    from fastadv.performance.benchmark import bench_eval

    bench_eval(args.model, n_points=args.n_points, batch_size=args.batch_size, threads=args.threads,
               repeats=args.repeats, csv_out=args.csv, data_root=args.data_root)
    return 0


def add_gpu_check(sub) -> None:
    p = sub.add_parser("gpu-check", help="precision, speed and one-epoch checks for a GPU (make gpu-check)")
    add_config_args(p)
    p.add_argument("--out", required=True, help="folder for report.json, report.md and the check runs")
    p.add_argument("--iterations", type=int, default=10, help="timed training steps per repeat")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the timings")
    p.add_argument("--eval-points", type=int, default=256,
                   help="test points of the timed PGD-50-10 evaluation (256: a few of the GPU's batches)")
    p.set_defaults(func=cmd_gpu_check)


def cmd_gpu_check(args) -> int:
    import torch

    from fastadv.performance.gpu_check import gpu_check

    if not torch.cuda.is_available() and args.scale is None and args.resolved is None:
        raise FastAdvError("no CUDA device here: gpu-check is for a machine with one (make gpu-check there); "
                           "`fastadv gpu-check --scale smoke --out DIR` runs the same checks at a tiny size on this CPU")
    report = gpu_check(config_of(args, "train"), args.out, iterations=args.iterations, repeats=args.repeats,
                       eval_points=args.eval_points)
    cpu_note = "" if report["cuda"] else " (CPU: says nothing about CUDA)"
    for c in report["checks"]:
        print(f"{c['check']:<10} {c['status']}{cpu_note if c['about_cuda'] else ''}")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0 if all(c["status"] != "FAIL" for c in report["checks"]) else 1


def add_lemma2(sub) -> None:
    p = sub.add_parser("lemma2", help="Lemma 2 of the paper checked numerically: table, CSV and figure")
    p.add_argument("--out", required=True, help="Markdown table; .csv and .pdf/.png beside it")
    p.add_argument("--samples", type=int, default=None, help="Monte-Carlo (w, z) pairs for the bound (400,000)")
    p.add_argument("--images", type=int, default=None, help="random images per model (64)")
    p.add_argument("--inits", type=int, default=None, help="freshly initialised models per (eps, filters) (4)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_lemma2)


def cmd_lemma2(args) -> int:
    from fastadv.paper.lemma2 import write_lemma2

    given = {k: getattr(args, k) for k in ("samples", "images", "inits") if getattr(args, k) is not None}
    table = write_lemma2(args.out, seed=args.seed, **given)
    below = table[table["margin_in_se"] < -3]
    print(f"lemma2: {args.out}; measured below the bound by more than 3 standard errors: {len(below)} of {len(table)}")
    return 0


def add_digitize(sub) -> None:
    p = sub.add_parser("digitize", help="values of a published figure from its pixels (axis calibration, markers)")
    p.add_argument("image", help="the figure (PNG)")
    p.add_argument("--spec", required=True, help="what to read (YAML; e.g. docs/digitize/fig1.yaml)")
    p.add_argument("--out", required=True, help="CSV: one row per point, with uncertainty and how it was read")
    p.add_argument("--published", default=None, help="also write the readable points as published_values.yaml entries")
    p.set_defaults(func=cmd_digitize)


def cmd_digitize(args) -> int:
    from fastadv.paper.digitize import write_digitized

    df = write_digitized(args.image, args.spec, args.out, args.published)
    read = int(df["value"].notna().sum())
    print(f"digitize: {read} of {len(df)} points read -> {args.out}")
    return 0


def add_schema(sub) -> None:
    p = sub.add_parser("schema", help="print the JSON schema of params.yaml (as YAML)")
    p.set_defaults(func=cmd_schema)


def cmd_schema(args) -> int:
    import yaml

    from fastadv.config.schema import json_schema

    print(yaml.safe_dump(json_schema(), sort_keys=False), end="")
    return 0


def add_copy(sub) -> None:
    p = sub.add_parser("copy", help="copy a file atomically (the workflow's unscaled targets results/<name>)")
    p.add_argument("src")
    p.add_argument("dst")
    p.set_defaults(func=cmd_copy)


def cmd_copy(args) -> int:
    from fastadv import atomic

    src = Path(args.src)
    if not src.is_file():
        raise FastAdvError(f"file {str(src)!r} not found")
    atomic.write_bytes(args.dst, src.read_bytes())
    print(f"{src} -> {args.dst}")
    return 0


# The group's commands, in the order `fastadv --help` lists them: name -> the function adding its parser.
COMMANDS = {
    "bench-train": add_bench_train, "bench-eval": add_bench_eval, "gpu-check": add_gpu_check, "lemma2": add_lemma2,
    "digitize": add_digitize, "schema": add_schema, "copy": add_copy,
}
