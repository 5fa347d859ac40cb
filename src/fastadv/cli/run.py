"""Run experiments: prepare data, train, evaluate, import published models, build targets with the
workflow (run, report), the zoo, collect results, recompute CO flags and learning curves. Each command's
parser beside its handler; the handlers call the library."""
from __future__ import annotations

import os
import sys

from fastadv.cli.common import (
    add_params_arg, add_config_args, study_of, resolved_json, config_of, add_monitor_args, monitor_defaults,
)
from fastadv.errors import FastAdvError


def add_prepare(sub) -> None:
    from fastadv.data.registry import DATASETS

    p = sub.add_parser("prepare", help="verify a dataset source and write the canonical <root>/<dataset>.npz "
                                       "(imagenet: the manifest <root>/imagenet.json of an ImageFolder tree)")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--source", default=None,
                   help="'download', a .npz, an official archive/file, or a folder holding one; "
                        "imagenet: a folder with train/<class>/ and val/<class>/ "
                        "(default: $FASTADV_DATA_SOURCE, else ../shared/data if it holds cifar10.npz, else 'download')")
    p.add_argument("--root", default="data", help="folder for prepared data (default: %(default)s)")
    p.add_argument("--resize", type=int, nargs="*", default=None, metavar="N",
                   help="image folders: also write copies resized to a shorter side of N px (Wong et al.'s "
                        "resize.py) in <root>/<dataset>-N/ (default: the sizes the data.phases of the dataset's "
                        "experiments read at the scale; none given: no copies)")
    p.add_argument("--copies-only", action="store_true",
                   help="image folders: only the resized copies, from the manifest already prepared")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes resizing images (default: the CPU count, %(default)s)")
    add_params_arg(p, "params file whose data.phases name the sizes of --resize (default: params.yaml)")
    p.add_argument("--scale", default=None, help="the scale whose phases name them (default: the params file's)")
    p.set_defaults(func=cmd_prepare)


def cmd_prepare(args) -> int:
    from fastadv.data.registry import FOLDER_DATASETS
    from fastadv.data.datasets import default_source, prepare

    if args.dataset not in FOLDER_DATASETS and (args.resize or args.copies_only):
        raise FastAdvError(f"--resize/--copies-only are for image folders ({', '.join(FOLDER_DATASETS)}), "
                           f"not {args.dataset}")
    if not args.copies_only:
        source = args.source or default_source()
        out = prepare(args.dataset, source, args.root)
        checked = "layout checked" if out.suffix == ".json" else "hashes verified"
        print(f"prepared {args.dataset} from {source} -> {out} ({checked})")
    if args.dataset in FOLDER_DATASETS:
        from fastadv.config.study import dataset_resized_images
        from fastadv.data.resized_copies import prepare_resized

        sizes = args.resize if args.resize is not None else dataset_resized_images(study_of(args), args.dataset)
        for size in sizes:
            out = prepare_resized(args.root, args.dataset, size, args.workers)
            print(f"prepared {args.dataset} resized to {size} px -> {out} (layout checked, files as the originals)")
    return 0


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train one model (resumes if OUT holds an interrupted run)")
    add_config_args(p)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--ranks", type=int, default=1,
                   help="data-parallel ranks to start (srun inside a SLURM job, else torchrun on this machine), "
                        "sharing runtime.threads; 1: train in this process (default)")
    p.add_argument("--diverged-ok", action="store_true",
                   help="exit 0 for a run that diverged (its status stays in summary.json) instead of 3; "
                        "the workflow sets it so one diverged run does not stop a study, figures mark it")
    p.add_argument("--restart-if-changed", action="store_true",
                   help="an interrupted run in OUT made with another config is discarded and restarted "
                        "(default: refuse); a finished run is never overwritten")
    p.add_argument("--allow-cpu", action="store_true",
                   help="train at a scale that asks for GPUs on a machine without CUDA although it would take "
                        "over an hour (the workflow's --config allow_cpu=true)")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from fastadv.training.loop import FINISHED, Preempted, train

    cfg = config_of(args, "train")
    if args.resolved is None:  # the workflow's jobs were checked when it planned them
        from fastadv.api import check_can_train

        check_can_train(cfg, study_of(args), args.experiment, args.allow_cpu)
    from fastadv.training.launch import EXIT_PREEMPTED, mark_preempted, rank_command, run_ranks

    if args.ranks < 1:
        raise FastAdvError(f"--ranks {args.ranks}: a run has at least 1 rank")
    launch = rank_command(args.argv, args.ranks, cfg["runtime"]["threads"])
    if launch is not None:
        print(f"fastadv: starting {args.ranks} ranks: {' '.join(launch[0])}", file=sys.stderr, flush=True)
        return run_ranks(*launch)
    try:
        s = train(cfg, args.out, restart_if_changed=args.restart_if_changed)
    except Preempted as e:
        print(f"fastadv: pre-empted: {e}; rerun the same command to continue", file=sys.stderr)
        mark_preempted()
        return EXIT_PREEMPTED
    if os.environ.get("RANK", "0") == "0":  # data-parallel runs: rank 0 speaks for all
        print(f"{s['status']}: {args.out} (final test PGD acc {s['final']['test_pgd_acc']:.3f}, "
              f"best epoch {s['best_epoch']}, CO epoch {s['co_epoch']})")
    return 0 if s["status"] in FINISHED or args.diverged_ok else 3


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="clean / PGD-50-10 / AutoAttack accuracy of one model file -> JSON")
    add_config_args(p, "evaluate")
    p.add_argument("--model", required=True, help="model file (model_final.pt or model_best.pt)")
    p.add_argument("--out", required=True, help="result JSON")
    p.add_argument("--eps", type=float, default=None, help="evaluation ε in /255 (default: the training ε)")
    p.add_argument("--data-root", default=None, help="prepared data folder (default: the run's data.root)")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from fastadv.evaluation.protocol import evaluate

    cfg = config_of(args, "evaluate")
    r = evaluate(args.model, args.out, cfg, eps255=args.eps, data_root=args.data_root)
    aa = f", AutoAttack {r['autoattack']['acc']:.3f}" if r["autoattack"] else ""
    print(f"{args.model}: clean {r['clean_acc']:.3f}, {r['pgd']['protocol']} {r['pgd']['acc']:.3f}{aa} "
          f"on {r['n_points']} points at eps {r['eps']:g}/255 -> {args.out}")
    return 0


def add_import(sub) -> None:
    from fastadv.data.registry import DATASETS

    p = sub.add_parser("import", help="convert a published checkpoint (official GradAlign code, Wong et al., "
                                      "RobustBench) into a fastadv model file")
    p.add_argument("--from", dest="source", required=True, choices=("official", "wong", "robustbench"),
                   help="the code base that wrote SRC")
    p.add_argument("src", help="the checkpoint file (robustbench: the model's name, e.g. Andriushchenko2020Understanding)")
    p.add_argument("--out", required=True, help="the fastadv model file to write")
    p.add_argument("--which", default="last", choices=("last", "best"),
                   help="official {'last', 'best'} files: the final or the early-stopped model (eval.py's "
                        "--early_stopped_model); default: %(default)s")
    p.add_argument("--dataset", default=None, choices=DATASETS,
                   help="the dataset it was trained on (default: the source's, else cifar10; SVHN models: svhn)")
    p.add_argument("--eps", type=float, default=None,
                   help="its training eps in /255 (default: from an official file name's eps=…, RobustBench's table)")
    p.add_argument("--model-dir", default="models",
                   help="robustbench: its model_dir (files at <model_dir>/<dataset>/Linf/<name>.pt); default: %(default)s")
    p.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    from fastadv.zoo.registry import import_model

    o = import_model(args.source, args.src, args.out, which=args.which, dataset=args.dataset, eps=args.eps,
                     model_dir=args.model_dir)
    eps = "not recorded (pass --eps to evaluate)" if o["eps"] is None else f"{o['eps']:g}/255"
    print(f"imported {o['source']} {o['name']} ({o['which']}) -> {args.out}: dataset {o['dataset']}, training eps "
          f"{eps}{', evaluated on a ' + str(o['eval_crop']) + '-px centre crop' if o['eval_crop'] else ''}; "
          f"next: fastadv evaluate --model {args.out} --out RESULT.json")
    return 0


def add_run(sub) -> None:
    p = sub.add_parser("run", help="build figures and tables with the workflow: Snakemake, its arguments in the "
                                   "order it parses them")
    p.add_argument("targets", nargs="+", metavar="TARGET", help="e.g. results/fig1.pdf (fastadv targets lists them)")
    p.add_argument("--scale", default=None, help="the scale to build (default: params.yaml's scale:)")
    p.add_argument("--cores", default="all", help="CPU cores Snakemake may use (default: all)")
    p.add_argument("--profile", default=None, help="a Snakemake profile folder, e.g. workflow/profiles/slurm")
    p.add_argument("-n", "--dry-run", action="store_true", help="plan only: the jobs Snakemake would run")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    from fastadv.workflow.run import run_targets

    return run_targets(args.targets, scale=args.scale, cores=args.cores, profile=args.profile, dry_run=args.dry_run)


def add_report(sub) -> None:
    p = sub.add_parser("report", help="an HTML report of what the workflow built at a scale: each figure and table "
                                      "with its caption and config, by experiment")
    p.add_argument("--scale", required=True, help="the scale whose results/<scale>/ to report")
    p.add_argument("--out", default=None, help="the HTML file (default: results/<scale>/report.html)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from fastadv.paper.targets import known
    from fastadv.workflow.run import write_report

    return write_report(args.scale, known, args.out)


def add_zoo(sub) -> None:
    p = sub.add_parser("zoo", help="evaluate the models listed in params.yaml zoo: -> Markdown table (+ CSV)")
    add_params_arg(p)
    p.add_argument("--scale", default=None, help="the scale whose zoo listing and evaluation settings to use")
    p.add_argument("--resolved", default=None, metavar="JSON",
                   help="the zoo as the workflow resolved it ({dir, evaluate, models}); no params file is read")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one evaluate key of the zoo's evaluation (repeatable), e.g. --set n_points=100")
    p.add_argument("--out", required=True, help="results/<scale>/zoo.md; zoo.csv and zoo/<name>.json beside it")
    p.add_argument("--data-root", default="data", help="prepared data (default: %(default)s)")
    p.set_defaults(func=cmd_zoo)


def cmd_zoo(args) -> int:
    from fastadv.config.study import apply_sets
    from fastadv.config.zoo import validate_zoo
    from fastadv.paper.reference import load_checkpoints
    from fastadv.zoo.table import zoo_table

    if args.resolved is not None:  # the workflow's: {"dir", "evaluate": the whole config, "models"}
        doc = resolved_json(args)
        zoo = {**validate_zoo(doc), "evaluate": apply_sets(doc.get("evaluate") or {}, "evaluate", args.sets)}
    else:
        zoo = study_of(args).zoo(args.sets)
    rows = zoo_table(zoo, args.out, data_root=args.data_root, published=load_checkpoints())
    done = sum(r["status"] == "evaluated" for r in rows)
    print(f"zoo: {done} of {len(rows)} listed models evaluated -> {args.out}")
    return 0


def add_collect(sub) -> None:
    p = sub.add_parser("collect", help="tidy CSV table from evaluation JSONs")
    p.add_argument("results", nargs="*", help="result JSON files")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_collect)


def cmd_collect(args) -> int:
    from fastadv.evaluation.results import collect, write_table

    df = collect(args.results)
    write_table(df, args.out)
    print(f"{len(df)} results -> {args.out}")
    return 0


def add_co_flags(sub) -> None:
    p = sub.add_parser("co-flags", help="recompute finished runs' CO flags and learned status from their "
                                        "history.csv under the monitor rule (no retraining)")
    add_monitor_args(p)
    p.add_argument("--out", default=None, help="also write the table as CSV here")
    p.set_defaults(func=cmd_co_flags)


def cmd_co_flags(args) -> int:
    from fastadv import atomic
    from fastadv.paper.figures import markdown
    from fastadv.training.outcome import co_flags_table

    df = co_flags_table(args.runs, monitor_defaults(args))
    print(markdown(df, "CO flags and status recomputed from each run's history (recorded_*: its summary.json)"))
    if args.out:
        atomic.write_text(args.out, df.to_csv(index=False))
    return 0


def add_curves(sub) -> None:
    p = sub.add_parser("curves", help="learning curves of finished runs (clean and PGD accuracy, gradient "
                                      "alignment, CO flags per evaluation) -> long-form CSV for dvc plots")
    add_monitor_args(p)
    p.add_argument("--out", required=True, help="the CSV to write")
    p.set_defaults(func=cmd_curves)


def cmd_curves(args) -> int:
    from fastadv import atomic
    from fastadv.training.outcome import learning_curves

    df = learning_curves(args.runs, monitor_defaults(args))
    atomic.write_text(args.out, df.to_csv(index=False))
    print(f"{df['run'].nunique()} runs, {len(df)} evaluations -> {args.out}")
    return 0


# The group's commands, in the order `fastadv --help` lists them: name -> the function adding its parser.
COMMANDS = {
    "prepare": add_prepare, "train": add_train, "evaluate": add_evaluate, "import": add_import, "run": add_run,
    "report": add_report, "zoo": add_zoo, "collect": add_collect, "co-flags": add_co_flags, "curves": add_curves,
}
