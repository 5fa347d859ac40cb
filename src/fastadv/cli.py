"""``fastadv`` command line: the user's commands first, the maintainers' tools in their own group (``GROUPS``).

Every error that is the user's to fix is printed as one line
(``fastadv: error: …``) with exit code 2; a pre-empted training exits 75.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from fastadv.errors import FastAdvError

DEFAULT_CONFIG = "params.yaml"


class _FormerParamsFlag(argparse.Action):
    """``--config``, the params file's flag before ``--params``: still read, with a note, since Snakemake's
    ``--config`` means key=value pairs and one name should mean one thing."""

    def __call__(self, parser, namespace, values, option_string=None):
        print("fastadv: note: --config FILE is now --params FILE (Snakemake's --config takes key=value pairs)",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def _add_params_arg(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument("--params", dest="config", default=None, metavar="FILE",
                   help=help or f"params file (default: ./{DEFAULT_CONFIG}, else the packaged one)")
    p.add_argument("--config", dest="config", action=_FormerParamsFlag, help=argparse.SUPPRESS)


def _add_config_args(p: argparse.ArgumentParser, section: str = "train") -> None:
    _add_params_arg(p)
    p.add_argument("--scale", default=None,
                   help="apply the overrides of scales.<SCALE> in the params file (default: its top-level scale)")
    p.add_argument("--experiment", default=None, help="apply the settings of experiments.<EXPERIMENT>")
    p.add_argument("--resolved", default=None, metavar="JSON",
                   help=f"the whole resolved {section} config as JSON, used as it is (the workflow passes the config "
                        "it planned the job with); no params file is read; --set still applies")
    if section == "train":
        p.add_argument("--variant", default=None, help="method variant label from the params file's variants")
        p.add_argument("--eps", type=float, default=None, help="ε in units of 1/255 (= --set method.eps=…)")
        p.add_argument("--seed", type=int, default=None, help="= --set runtime.seed=…")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override one {section} key (repeatable), e.g. " + (
                       "--set method.name=gradalign --set method.eps=16" if section == "train"
                       else "--set n_points=500 --set autoattack=true"))


def _study(args):
    from fastadv.config.params import default_params
    from fastadv.config.study import Study

    return Study.load(args.config or default_params(), args.scale)


def _resolved_json(args, section: str | None = None) -> dict:
    """The ``--resolved`` config; it replaces every other source of the config, so naming one as well is an
    error (``--eps`` of evaluate and figure is the evaluation's / the title's ε, not a config source)."""
    sources = ("config", "scale", "experiment") + (("variant", "eps", "seed") if section == "train" else ())
    given = [f"--{k}" for k in sources if getattr(args, k, None) is not None]
    if given:
        raise FastAdvError(f"--resolved is the whole config; drop {', '.join(given)}")
    try:
        doc = json.loads(args.resolved)
    except json.JSONDecodeError as e:
        raise FastAdvError(f"--resolved is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise FastAdvError(f"--resolved must be a JSON object, got {type(doc).__name__}")
    return doc


def _config(args, section: str) -> dict:
    """The run's ``train``/``evaluate`` config: ``--resolved`` as it is, else the params file
    resolved for --scale/--experiment (and --variant/--eps/--seed), then ``--set``."""
    from fastadv.config.study import apply_sets

    if args.resolved is not None:
        return apply_sets(_resolved_json(args, section), section, args.sets)
    study = _study(args)
    if section == "train":
        return study.train_config(args.experiment, args.variant, args.eps, args.seed, args.sets)
    return study.eval_config(args.experiment, args.sets)


def cmd_prepare(args) -> int:
    from fastadv.config.params import FOLDER_DATASETS
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
        from fastadv.config.study import resized_images
        from fastadv.data.resized_copies import prepare_resized

        study = _study(args)
        sizes = args.resize if args.resize is not None else sorted(
            {n for e, x in study.doc["experiments"].items() if x["dataset"] == args.dataset
             for n in resized_images(study, e)})
        for size in sizes:
            out = prepare_resized(args.root, args.dataset, size, args.workers)
            print(f"prepared {args.dataset} resized to {size} px -> {out} (layout checked, files as the originals)")
    return 0


def cmd_train(args) -> int:
    from fastadv.training.loop import FINISHED, Preempted, train

    cfg = _config(args, "train")
    if args.resolved is None:  # the workflow's jobs were checked when it planned them
        from fastadv.api import check_can_train

        check_can_train(cfg, _study(args), args.experiment, args.allow_cpu)
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


def cmd_evaluate(args) -> int:
    from fastadv.evaluation.protocol import evaluate

    cfg = _config(args, "evaluate")
    r = evaluate(args.model, args.out, cfg, eps255=args.eps, data_root=args.data_root)
    aa = f", AutoAttack {r['autoattack']['acc']:.3f}" if r["autoattack"] else ""
    print(f"{args.model}: clean {r['clean_acc']:.3f}, {r['pgd']['protocol']} {r['pgd']['acc']:.3f}{aa} "
          f"on {r['n_points']} points at eps {r['eps']:g}/255 -> {args.out}")
    return 0


def cmd_import(args) -> int:
    from fastadv.zoo.registry import import_model

    o = import_model(args.source, args.src, args.out, which=args.which, dataset=args.dataset, eps=args.eps,
                     model_dir=args.model_dir)
    eps = "not recorded (pass --eps to evaluate)" if o["eps"] is None else f"{o['eps']:g}/255"
    print(f"imported {o['source']} {o['name']} ({o['which']}) -> {args.out}: dataset {o['dataset']}, training eps "
          f"{eps}{', evaluated on a ' + str(o['eval_crop']) + '-px centre crop' if o['eval_crop'] else ''}; "
          f"next: fastadv evaluate --model {args.out} --out RESULT.json")
    return 0


def cmd_zoo(args) -> int:
    from fastadv.config.study import apply_sets
    from fastadv.config.zoo import validate_zoo
    from fastadv.zoo.table import zoo_table

    if args.resolved is not None:  # the workflow's: {"dir", "evaluate": the whole config, "models"}
        doc = _resolved_json(args)
        zoo = {**validate_zoo(doc), "evaluate": apply_sets(doc.get("evaluate") or {}, "evaluate", args.sets)}
    else:
        zoo = _study(args).zoo(args.sets)
    rows = zoo_table(zoo, args.out, data_root=args.data_root)
    done = sum(r["status"] == "evaluated" for r in rows)
    print(f"zoo: {done} of {len(rows)} listed models evaluated -> {args.out}")
    return 0


def cmd_collect(args) -> int:
    from fastadv.evaluation.results import collect, write_table

    df = collect(args.results)
    write_table(df, args.out)
    print(f"{len(df)} results -> {args.out}")
    return 0


def _monitor_defaults(args) -> dict:
    """The params file's train.monitor (at --scale): the rule's keys for runs whose config predates them."""
    return _study(args).train_config(None, None, None, None, [])["monitor"]


def cmd_co_flags(args) -> int:
    import pandas as pd

    from fastadv import atomic
    from fastadv.paper.figures import markdown
    from fastadv.training.outcome import run_outcome

    defaults = _monitor_defaults(args)
    rows = []
    for run_dir in args.runs:
        o = run_outcome(run_dir, defaults)
        rows.append({"run": str(run_dir), "status": o["status"], "co_epoch": o["co_epoch"],
                     "co_iteration": o["co_iteration"], "flagged_evaluations": sum(o["flags"]),
                     "recorded_status": o["recorded"]["status"], "recorded_co_epoch": o["recorded"]["co_epoch"],
                     "monitor_points": o["monitor_points"],
                     "rule_from_params": ", ".join(o["rule_from_defaults"]) or "-"})
    df = pd.DataFrame(rows).astype({"co_epoch": "Int64", "co_iteration": "Int64", "recorded_co_epoch": "Int64"})
    print(markdown(df, "CO flags and status recomputed from each run's history (recorded_*: its summary.json)"))
    if args.out:
        atomic.write_text(args.out, df.to_csv(index=False))
    return 0


def cmd_curves(args) -> int:
    from fastadv import atomic
    from fastadv.training.outcome import learning_curves

    df = learning_curves(args.runs, _monitor_defaults(args))
    atomic.write_text(args.out, df.to_csv(index=False))
    print(f"{df['run'].nunique()} runs, {len(df)} evaluations -> {args.out}")
    return 0


def cmd_figure(args) -> int:
    from fastadv.paper.render import FIGURES, FigureJob
    from fastadv.config.study import validate_experiment_scalars

    if args.resolved is not None:
        doc = _resolved_json(args)
        scale, exp = doc.get("scale"), validate_experiment_scalars(doc.get("experiment"), "--resolved experiment")
        others = [validate_experiment_scalars(o, "--resolved others") for o in doc.get("others", [])]
        if not isinstance(scale, str):
            raise FastAdvError("--resolved of a figure needs {\"scale\": NAME, \"experiment\": {...}}")
    else:
        study = _study(args)
        names = args.experiment or ["fig1"]
        scale, exp, others = study.scale, study.experiment(names[0]), [study.experiment(n) for n in names[1:]]
    FIGURES[args.name](FigureJob(args.name, scale, exp, Path(args.out), args.results, args.histories, args.eps,
                                 args.published, args.data_root, others))
    print(f"{args.name}: {args.out}")
    return 0


def cmd_run(args) -> int:
    from fastadv.workflow.run import run_targets

    return run_targets(args.targets, scale=args.scale, cores=args.cores, profile=args.profile, dry_run=args.dry_run)


def cmd_report(args) -> int:
    from fastadv.paper.targets import known
    from fastadv.workflow.run import write_report

    return write_report(args.scale, known, args.out)


def cmd_targets(args) -> int:
    from fastadv.paper.targets import targets_table

    print(targets_table())
    return 0


def cmd_lemma2(args) -> int:
    from fastadv import atomic
    from fastadv.paper.figures import write_table
    from fastadv.paper.lemma2 import lemma2_figure, lemma2_table

    out = Path(args.out)
    given = {k: getattr(args, k) for k in ("samples", "images", "inits") if getattr(args, k) is not None}
    table = lemma2_table(seed=args.seed, **given)
    lemma2_figure(table, out.with_suffix(".pdf"))
    write_table(table, out, "Lemma 2: gradient alignment of single-layer CNNs at initialisation (measured, mean ± "
                "standard error over images and initialisations) against the lemma's lower bound (Monte Carlo).")
    atomic.write_text(out.with_name(out.stem + "_data.csv"), table.to_csv(index=False))
    below = table[table["margin_in_se"] < -3]
    print(f"lemma2: {out}; measured below the bound by more than 3 standard errors: {len(below)} of {len(table)}")
    return 0


def cmd_fidelity(args) -> int:
    from fastadv.paper.fidelity import fidelity_report
    from fastadv.paper.figures import write_table

    table = fidelity_report(args.model, args.data_root, args.n_points, args.eval_points)
    write_table(table, args.out, f"Effect of each switch of parity with the official GradAlign code on {args.model} "
                "(docs/guide/fidelity.md): both settings on the same model and points.")
    print(f"fidelity: {args.out}")
    return 0


def cmd_digitize(args) -> int:
    import yaml

    from fastadv import atomic
    from fastadv.paper.digitize import digitize, load_image, load_spec, to_published

    spec = load_spec(args.spec)
    df = digitize(load_image(args.image), spec)
    atomic.write_text(args.out, df.to_csv(index=False))
    if args.published:
        lines = [f"- {yaml.safe_dump(e, default_flow_style=True, sort_keys=False, allow_unicode=True, width=10_000).strip()}"
                 for e in to_published(df, spec)]
        atomic.write_text(args.published, "\n".join(lines) + "\n")
    read = int(df["value"].notna().sum())
    print(f"digitize: {read} of {len(df)} points read -> {args.out}")
    return 0


def cmd_methods(args) -> int:
    from fastadv.methods.registry import methods_table

    print(methods_table())
    return 0


def cmd_copy(args) -> int:
    from fastadv import atomic

    src = Path(args.src)
    if not src.is_file():
        raise FastAdvError(f"file {str(src)!r} not found")
    atomic.write_bytes(args.dst, src.read_bytes())
    print(f"{src} -> {args.dst}")
    return 0


def cmd_bench_eval(args) -> int:
    from fastadv.evaluation.benchmark import bench_eval

    bench_eval(args.model, n_points=args.n_points, batch_size=args.batch_size, threads=args.threads,
               repeats=args.repeats, csv_out=args.csv, data_root=args.data_root)
    return 0


def cmd_schema(args) -> int:
    import yaml

    from fastadv.config.study import json_schema

    print(yaml.safe_dump(json_schema(), sort_keys=False), end="")
    return 0


def cmd_bench_train(args) -> int:
    from fastadv.evaluation.benchmark import bench_train

    cfg = _config(args, "train")
    configs = None
    if args.resolved is None:  # each method as the scale trains it: its variant's layout and double backward
        study = _study(args)
        configs = {m: study.train_config(args.experiment, m, args.eps, args.seed, args.sets)
                   for m in args.methods if m in study.doc["variants"]}
    bench_train(cfg, args.methods, iterations=args.iterations, repeats=args.repeats, csv_out=args.csv,
                configs=configs, layout=args.layout)
    return 0


def cmd_estimate(args) -> int:
    from fastadv.evaluation.estimate import calibrate, estimate, read_reference

    if args.calibrate:
        if args.wall_seconds is None:
            raise FastAdvError("--calibrate needs --wall-seconds: the target's measured wall time on this machine")
        ref = calibrate(args.target, args.wall_seconds, params=args.config)
        print(f"reference: {ref['machine']}, {args.target} {args.wall_seconds:.0f} s, probe {ref['probe_seconds']}")
        return 0
    print(estimate(args.target, read_reference(), params=args.config), flush=True)
    return 0


def cmd_gpu_check(args) -> int:
    import torch

    from fastadv.evaluation.gpu_check import gpu_check

    if not torch.cuda.is_available() and args.scale is None and args.resolved is None:
        raise FastAdvError("no CUDA device here: gpu-check is for a machine with one (make gpu-check there); "
                           "`fastadv gpu-check --scale smoke --out DIR` runs the same checks at a tiny size on this CPU")
    report = gpu_check(_config(args, "train"), args.out, iterations=args.iterations, repeats=args.repeats)
    for c in report["checks"]:
        print(f"{c['check']:<10} {c['status']}{'' if report['cuda'] or not c['about_cuda'] else ' (CPU: says nothing about CUDA)'}")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0 if all(c["status"] != "FAIL" for c in report["checks"]) else 1


def cmd_show_config(args) -> int:
    import yaml

    cfg = _config(args, "train")
    if not args.all:  # the run's effective values: the chosen method's block only, nulls resolved
        from fastadv.methods import build_method

        m = cfg["method"]
        used = build_method(m, cfg["data"]["dataset"]).effective_params()
        switches = {k: v for k, v in m.items() if not isinstance(v, dict) and k not in ("name", "eps")}
        cfg = {**cfg, "method": {"name": m["name"], "eps": m["eps"], **({m["name"]: used} if used else {}), **switches}}
    print(yaml.safe_dump(cfg, sort_keys=False), end="")
    return 0


def _add_prepare_command(sub) -> None:
    from fastadv.config.params import DATASETS

    pp = sub.add_parser("prepare", help="verify a dataset source and write the canonical <root>/<dataset>.npz "
                                        "(imagenet: the manifest <root>/imagenet.json of an ImageFolder tree)")
    pp.add_argument("--dataset", required=True, choices=DATASETS)
    pp.add_argument("--source", default=None,
                    help="'download', a .npz, an official archive/file, or a folder holding one; "
                         "imagenet: a folder with train/<class>/ and val/<class>/ "
                         "(default: $FASTADV_DATA_SOURCE, else ../shared/data if it holds cifar10.npz, else 'download')")
    pp.add_argument("--root", default="data", help="folder for prepared data (default: %(default)s)")
    pp.add_argument("--resize", type=int, nargs="*", default=None, metavar="N",
                    help="image folders: also write copies resized to a shorter side of N px (Wong et al.'s "
                         "resize.py) in <root>/<dataset>-N/ (default: the sizes the data.phases of the dataset's "
                         "experiments read at the scale; none given: no copies)")
    pp.add_argument("--copies-only", action="store_true",
                    help="image folders: only the resized copies, from the manifest already prepared")
    pp.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="processes resizing images (default: the CPU count, %(default)s)")
    _add_params_arg(pp, "params file whose data.phases name the sizes of --resize (default: params.yaml)")
    pp.add_argument("--scale", default=None, help="the scale whose phases name them (default: the params file's)")
    pp.set_defaults(func=cmd_prepare)


def _add_run_commands(sub) -> None:
    """prepare, train, evaluate, collect: what the workflow's jobs run."""
    _add_prepare_command(sub)
    pt = sub.add_parser("train", help="train one model (resumes if OUT holds an interrupted run)")
    _add_config_args(pt)
    pt.add_argument("--out", required=True, help="run directory")
    pt.add_argument("--ranks", type=int, default=1,
                    help="data-parallel ranks to start (srun inside a SLURM job, else torchrun on this machine), "
                         "sharing runtime.threads; 1: train in this process (default)")
    pt.add_argument("--diverged-ok", action="store_true",
                    help="exit 0 for a run that diverged (its status stays in summary.json) instead of 3; "
                         "the workflow sets it so one diverged run does not stop a study, figures mark it")
    pt.add_argument("--restart-if-changed", action="store_true",
                    help="an interrupted run in OUT made with another config is discarded and restarted "
                         "(default: refuse); a finished run is never overwritten")
    pt.add_argument("--allow-cpu", action="store_true",
                    help="train at a scale that asks for GPUs on a machine without CUDA although it would take "
                         "over an hour (the workflow's --config allow_cpu=true)")
    pt.set_defaults(func=cmd_train)

    pe = sub.add_parser("evaluate", help="clean / PGD-50-10 / AutoAttack accuracy of one model file -> JSON")
    _add_config_args(pe, "evaluate")
    pe.add_argument("--model", required=True, help="model file (model_final.pt or model_best.pt)")
    pe.add_argument("--out", required=True, help="result JSON")
    pe.add_argument("--eps", type=float, default=None, help="evaluation ε in /255 (default: the training ε)")
    pe.add_argument("--data-root", default=None, help="prepared data folder (default: the run's data.root)")
    pe.set_defaults(func=cmd_evaluate)

    pl = sub.add_parser("collect", help="tidy CSV table from evaluation JSONs")
    pl.add_argument("results", nargs="*", help="result JSON files")
    pl.add_argument("--out", required=True)
    pl.set_defaults(func=cmd_collect)

    pf = sub.add_parser("co-flags", help="recompute finished runs' CO flags and learned status from their "
                                         "history.csv under the monitor rule (no retraining)")
    _add_monitor_args(pf)
    pf.add_argument("--out", default=None, help="also write the table as CSV here")
    pf.set_defaults(func=cmd_co_flags)

    pc = sub.add_parser("curves", help="learning curves of finished runs (clean and PGD accuracy, gradient "
                                       "alignment, CO flags per evaluation) -> long-form CSV for dvc plots")
    _add_monitor_args(pc)
    pc.add_argument("--out", required=True, help="the CSV to write")
    pc.set_defaults(func=cmd_curves)


def _add_monitor_args(p) -> None:
    """Run directories and where the CO rule's keys come from for runs that predate them (co-flags, curves)."""
    p.add_argument("runs", nargs="+", help="run directories (summary.json, history.csv)")
    _add_params_arg(p, f"params file whose train.monitor supplies the rule's keys a run's config predates "
                       f"(default: ./{DEFAULT_CONFIG}, else the packaged one)")
    p.add_argument("--scale", default=None, help="apply scales.<SCALE>'s monitor overrides to those keys")


def _add_workflow_command(sub) -> None:
    pr = sub.add_parser("run", help="build figures and tables with the workflow: Snakemake, its arguments in the "
                                    "order it parses them")
    pr.add_argument("targets", nargs="+", metavar="TARGET", help="e.g. results/fig1.pdf (fastadv targets lists them)")
    pr.add_argument("--scale", default=None, help="the scale to build (default: params.yaml's scale:)")
    pr.add_argument("--cores", default="all", help="CPU cores Snakemake may use (default: all)")
    pr.add_argument("--profile", default=None, help="a Snakemake profile folder, e.g. workflow/profiles/slurm")
    pr.add_argument("-n", "--dry-run", action="store_true", help="plan only: the jobs Snakemake would run")
    pr.set_defaults(func=cmd_run)

    pw = sub.add_parser("report", help="an HTML report of what the workflow built at a scale: each figure and table "
                                       "with its caption and config, by experiment")
    pw.add_argument("--scale", required=True, help="the scale whose results/<scale>/ to report")
    pw.add_argument("--out", default=None, help="the HTML file (default: results/<scale>/report.html)")
    pw.set_defaults(func=cmd_report)


def _add_zoo_commands(sub) -> None:
    """import, zoo: published models converted and evaluated (fastadv.zoo)."""
    from fastadv.config.params import DATASETS

    pi = sub.add_parser("import", help="convert a published checkpoint (official GradAlign code, Wong et al., "
                                       "RobustBench) into a fastadv model file")
    pi.add_argument("--from", dest="source", required=True, choices=("official", "wong", "robustbench"),
                    help="the code base that wrote SRC")
    pi.add_argument("src", help="the checkpoint file (robustbench: the model's name, e.g. Andriushchenko2020Understanding)")
    pi.add_argument("--out", required=True, help="the fastadv model file to write")
    pi.add_argument("--which", default="last", choices=("last", "best"),
                    help="official {'last', 'best'} files: the final or the early-stopped model (eval.py's "
                         "--early_stopped_model); default: %(default)s")
    pi.add_argument("--dataset", default=None, choices=DATASETS,
                    help="the dataset it was trained on (default: the source's, else cifar10; SVHN models: svhn)")
    pi.add_argument("--eps", type=float, default=None,
                    help="its training eps in /255 (default: from an official file name's eps=…, RobustBench's table)")
    pi.add_argument("--model-dir", default="models",
                    help="robustbench: its model_dir (files at <model_dir>/<dataset>/Linf/<name>.pt); default: %(default)s")
    pi.set_defaults(func=cmd_import)

    pz = sub.add_parser("zoo", help="evaluate the models listed in params.yaml zoo: -> Markdown table (+ CSV)")
    _add_params_arg(pz)
    pz.add_argument("--scale", default=None, help="the scale whose zoo listing and evaluation settings to use")
    pz.add_argument("--resolved", default=None, metavar="JSON",
                    help="the zoo as the workflow resolved it ({dir, evaluate, models}); no params file is read")
    pz.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override one evaluate key of the zoo's evaluation (repeatable), e.g. --set n_points=100")
    pz.add_argument("--out", required=True, help="results/<scale>/zoo.md; zoo.csv and zoo/<name>.json beside it")
    pz.add_argument("--data-root", default="data", help="prepared data (default: %(default)s)")
    pz.set_defaults(func=cmd_zoo)


def _add_figure_commands(sub) -> None:
    """figure, targets, fidelity, digitize, copy: tables and figures of the paper."""
    from fastadv.paper import targets

    pf = sub.add_parser("figure", help="render a figure of the paper from a results table")
    pf.add_argument("name", choices=targets.renderers(), help="the renderer (`fastadv targets`: which target uses which)")
    pf.add_argument("--results", nargs="*", default=[],
                    help="tidy results CSV(s) (fastadv collect), one per experiment (fig8: CIFAR-10's, SVHN's)")
    pf.add_argument("--histories", nargs="*", default=[],
                    help="history.csv files (figA, metrics: one per method; filter_*/feature_maps: the run's; "
                         "cnn_table: every run)")
    pf.add_argument("--data-root", default=None, help="prepared data (feature_maps; default: the run's data.root)")
    pf.add_argument("--eps", type=float, default=None, help="ε the histories were trained at (figA title)")
    pf.add_argument("--out", required=True, help="PDF (figures) or .md (tables); PNG/CSV/data beside it")
    _add_params_arg(pf)
    pf.add_argument("--scale", default=None, help="scale of the runs (default: the params file's top-level scale)")
    pf.add_argument("--experiment", action="append", default=None,
                    help="experiment whose runs the figure needs (default: fig1; fig8: fig1, then fig1_svhn)")
    pf.add_argument("--resolved", default=None, metavar="JSON",
                    help='{"scale": NAME, "experiment": {...}} as the workflow resolved them; no params file is read')
    pf.add_argument("--published", action="store_true",
                    help="also show the paper's published values (src/fastadv/paper/published_values.yaml): "
                         "faded open squares on fig1, published_* columns in the runtime/autoattack tables")
    pf.set_defaults(func=cmd_figure)

    ptg = sub.add_parser("targets", help="the figures and tables the workflow builds (Markdown table)")
    ptg.set_defaults(func=cmd_targets)

    pfi = sub.add_parser("fidelity", help="effect of each switch of parity with the official code on one model")
    pfi.add_argument("--model", required=True, help="a trained model file (e.g. a quick-scale FGSM model)")
    pfi.add_argument("--out", required=True, help="Markdown table; the CSV beside it")
    pfi.add_argument("--data-root", default=None, help="prepared data (default: the run's data.root)")
    pfi.add_argument("--n-points", type=int, default=256, help="training images for the training-time switches")
    pfi.add_argument("--eval-points", type=int, default=200, help="test images for the PGD restart rule")
    pfi.set_defaults(func=cmd_fidelity)

    pdg = sub.add_parser("digitize", help="values of a published figure from its pixels (axis calibration, markers)")
    pdg.add_argument("image", help="the figure (PNG)")
    pdg.add_argument("--spec", required=True, help="what to read (YAML; e.g. docs/digitize/fig1.yaml)")
    pdg.add_argument("--out", required=True, help="CSV: one row per point, with uncertainty and how it was read")
    pdg.add_argument("--published", default=None, help="also write the readable points as published_values.yaml entries")
    pdg.set_defaults(func=cmd_digitize)

    pcp = sub.add_parser("copy", help="copy a file atomically (the workflow's unscaled targets results/<name>)")
    pcp.add_argument("src")
    pcp.add_argument("dst")
    pcp.set_defaults(func=cmd_copy)


def _add_tool_commands(sub) -> None:
    """bench-eval, bench-train, estimate, lemma2, schema, config."""
    pb = sub.add_parser("bench-eval", help="time PGD-50-10 with and without skipping broken points (ratio)")
    pb.add_argument("--model", required=True)
    pb.add_argument("--n-points", type=int, default=256)
    pb.add_argument("--batch-size", type=int, default=1024)
    pb.add_argument("--threads", type=int, default=0)
    pb.add_argument("--data-root", default=None)
    pb.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median, min, max reported)")
    pb.add_argument("--csv", default=None, help="append the measurement to this CSV")
    pb.set_defaults(func=cmd_bench_eval)

    pt2 = sub.add_parser("bench-train", help="training-step speed of each method and its ratio to FGSM")
    _add_config_args(pt2)
    pt2.add_argument("--methods", nargs="+", default=["fgsm", "fgsm_rs", "gradalign", "gradalign_fd", "pgd", "free"],
                     help="variant labels of the params file (run as --scale/--experiment resolve them) or method names")
    pt2.add_argument("--iterations", type=int, default=20, help="timed steps per repeat")
    pt2.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median, min, max reported)")
    pt2.add_argument("--csv", default=None, help="append the measurements to this CSV")
    pt2.add_argument("--layout", choices=("trained", "default"), default="trained",
                     help="trained: each method (a variant label where there is one) in the memory layout and double "
                          "backward its config trains it with; default: all in the default layout, native double "
                          "backward (default: %(default)s)")
    pt2.set_defaults(func=cmd_bench_train)
    _add_estimate_command(sub)

    p2 = sub.add_parser("lemma2", help="Lemma 2 of the paper checked numerically: table, CSV and figure")
    p2.add_argument("--out", required=True, help="Markdown table; .csv and .pdf/.png beside it")
    p2.add_argument("--samples", type=int, default=None, help="Monte-Carlo (w, z) pairs for the bound (400,000)")
    p2.add_argument("--images", type=int, default=None, help="random images per model (64)")
    p2.add_argument("--inits", type=int, default=None, help="freshly initialised models per (eps, filters) (4)")
    p2.add_argument("--seed", type=int, default=0)
    p2.set_defaults(func=cmd_lemma2)

    pg = sub.add_parser("gpu-check", help="precision, speed and one-epoch checks for a GPU (make gpu-check)")
    _add_config_args(pg)
    pg.add_argument("--out", required=True, help="folder for report.json, report.md and the check runs")
    pg.add_argument("--iterations", type=int, default=10, help="timed training steps per repeat")
    pg.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the timings")
    pg.set_defaults(func=cmd_gpu_check)

    pm = sub.add_parser("methods", help="the training methods and their parameters (Markdown table)")
    pm.set_defaults(func=cmd_methods)

    ps = sub.add_parser("schema", help="print the JSON schema of params.yaml (as YAML)")
    ps.set_defaults(func=cmd_schema)

    pc = sub.add_parser("config", help="print a run's effective train config (the chosen method's parameters, "
                                       "λ resolved)")
    _add_config_args(pc)
    pc.add_argument("--all", action="store_true", help="the whole resolved config: every method's block, as stored")
    pc.set_defaults(func=cmd_show_config)


def _add_estimate_command(sub) -> None:
    pe = sub.add_parser("estimate", help="expected wall time of a CPU target (demo, sweep) here, from a 10-s probe")
    pe.add_argument("target", help="a target timed on the reference machine (fastadv/evaluation/estimate_reference.yaml)")
    _add_params_arg(pe)
    pe.add_argument("--calibrate", action="store_true",
                    help="make this machine the reference: probe it and record the target's --wall-seconds")
    pe.add_argument("--wall-seconds", type=float, default=None, help="the target's measured wall time here")
    pe.set_defaults(func=cmd_estimate)


# `fastadv --help` lists the commands in these groups, in this order (a test checks each is in one).
GROUPS = {
    "Run experiments": ("prepare", "train", "evaluate", "import", "run", "report", "zoo", "collect", "co-flags", "curves"),
    "Figures, tables and what is configured": ("figure", "targets", "fidelity", "estimate", "config", "methods"),
    "Maintainer tools": ("bench-train", "bench-eval", "gpu-check", "lemma2", "digitize", "schema", "copy"),
}


def build_parser() -> argparse.ArgumentParser:
    from fastadv import __version__

    p = argparse.ArgumentParser(prog="fastadv", description="Fast adversarial training and GradAlign, reproducibly.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"fastadv {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of the commands below")
    _add_run_commands(sub)
    _add_workflow_command(sub)
    _add_zoo_commands(sub)
    _add_figure_commands(sub)
    _add_tool_commands(sub)
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, parser in sub.choices.items():  # each command's --help opens with its one line
        parser.description = parser.description or helps[name]
    sub._choices_actions = []  # listed by group in the epilog instead of flat
    width = max(map(len, sub.choices)) + 2
    p.epilog = "\n\n".join(f"{group}:\n" + "\n".join(f"  {n:<{width}}{helps[n]}" for n in names)
                             for group, names in GROUPS.items()) + "\n\nfastadv COMMAND --help: its options."
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except FastAdvError as e:
        print(f"fastadv: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
