"""Figures, tables and what is configured: figure, targets, fidelity, estimate, config, methods. Each
command's parser beside its handler; the handlers call the library."""
from __future__ import annotations

from pathlib import Path

from fastadv.cli.common import add_params_arg, add_config_args, study_of, resolved_json, config_of
from fastadv.errors import FastAdvError


def add_figure(sub) -> None:
    from fastadv.paper import targets

    p = sub.add_parser("figure", help="render a figure of the paper from a results table")
    p.add_argument("name", choices=targets.renderers(), help="the renderer (`fastadv targets`: which target uses which)")
    p.add_argument("--results", nargs="*", default=[],
                   help="tidy results CSV(s) (fastadv collect), one per experiment (fig8: CIFAR-10's, SVHN's)")
    p.add_argument("--histories", nargs="*", default=[],
                   help="history.csv files (figA, metrics: one per method; filter_*/feature_maps: the run's; "
                        "cnn_table: every run)")
    p.add_argument("--data-root", default=None, help="prepared data (feature_maps; default: the run's data.root)")
    p.add_argument("--eps", type=float, default=None, help="ε the histories were trained at (figA title)")
    p.add_argument("--out", required=True, help="PDF (figures) or .md (tables); PNG/CSV/data beside it")
    add_params_arg(p)
    p.add_argument("--scale", default=None, help="scale of the runs (default: the params file's top-level scale)")
    p.add_argument("--experiment", action="append", default=None,
                   help="experiment whose runs the figure needs (default: fig1; fig8: fig1, then fig1_svhn)")
    p.add_argument("--resolved", default=None, metavar="JSON",
                   help='{"scale": NAME, "experiment": {...}} as the workflow resolved them; no params file is read')
    p.add_argument("--published", action="store_true",
                   help="also show the paper's published values (src/fastadv/paper/published_values.yaml): "
                        "faded open squares on fig1, published_* columns in the runtime/autoattack tables")
    p.set_defaults(func=cmd_figure)


def cmd_figure(args) -> int:
    from fastadv.paper.render import FIGURES, FigureJob
    from fastadv.config.study import validate_experiment_scalars

    if args.resolved is not None:
        doc = resolved_json(args)
        scale, exp = doc.get("scale"), validate_experiment_scalars(doc.get("experiment"), "--resolved experiment")
        others = [validate_experiment_scalars(o, "--resolved others") for o in doc.get("others", [])]
        if not isinstance(scale, str):
            raise FastAdvError("--resolved of a figure needs {\"scale\": NAME, \"experiment\": {...}}")
    else:
        study = study_of(args)
        names = args.experiment or ["fig1"]
        scale, exp, others = study.scale, study.experiment(names[0]), [study.experiment(n) for n in names[1:]]
    FIGURES[args.name](FigureJob(args.name, scale, exp, Path(args.out), args.results, args.histories, args.eps,
                                 args.published, args.data_root, others))
    print(f"{args.name}: {args.out}")
    return 0


def add_targets(sub) -> None:
    p = sub.add_parser("targets", help="the figures and tables the workflow builds (Markdown table)")
    p.set_defaults(func=cmd_targets)


def cmd_targets(args) -> int:
    from fastadv.paper.targets import targets_table

    print(targets_table())
    return 0


def add_fidelity(sub) -> None:
    p = sub.add_parser("fidelity", help="effect of each switch of parity with the official code on one model")
    p.add_argument("--model", required=True, help="a trained model file (e.g. a quick-scale FGSM model)")
    p.add_argument("--out", required=True, help="Markdown table; the CSV beside it")
    p.add_argument("--data-root", default=None, help="prepared data (default: the run's data.root)")
    p.add_argument("--n-points", type=int, default=256, help="training images for the training-time switches")
    p.add_argument("--eval-points", type=int, default=200, help="test images for the PGD restart rule")
    p.set_defaults(func=cmd_fidelity)


def cmd_fidelity(args) -> int:
    from fastadv.paper.fidelity import fidelity_report
    from fastadv.paper.figures import write_table

    table = fidelity_report(args.model, args.data_root, args.n_points, args.eval_points)
    write_table(table, args.out, f"Effect of each switch of parity with the official GradAlign code on {args.model} "
                "(docs/guide/fidelity.md): both settings on the same model and points.")
    print(f"fidelity: {args.out}")
    return 0


def add_estimate(sub) -> None:
    p = sub.add_parser("estimate", help="expected wall time of a CPU target (demo, sweep) here, from a 10-s probe")
    p.add_argument("target", help="a target timed on the reference machine (fastadv/performance/estimate_reference.yaml)")
    add_params_arg(p)
    p.add_argument("--calibrate", action="store_true",
                   help="make this machine the reference: probe it and record the target's --wall-seconds")
    p.add_argument("--wall-seconds", type=float, default=None, help="the target's measured wall time here")
    p.set_defaults(func=cmd_estimate)


def cmd_estimate(args) -> int:
    from fastadv.performance.estimate import calibrate, estimate, read_reference

    if args.calibrate:
        if args.wall_seconds is None:
            raise FastAdvError("--calibrate needs --wall-seconds: the target's measured wall time on this machine")
        ref = calibrate(args.target, args.wall_seconds, params=args.config)
        print(f"reference: {ref['machine']}, {args.target} {args.wall_seconds:.0f} s, probe {ref['probe_seconds']}")
        return 0
    print(estimate(args.target, read_reference(), params=args.config), flush=True)
    return 0


def add_config(sub) -> None:
    p = sub.add_parser("config", help="print a run's effective train config (the chosen method's parameters, "
                                      "λ resolved)")
    add_config_args(p)
    p.add_argument("--all", action="store_true", help="the whole resolved config: every method's block, as stored")
    p.set_defaults(func=cmd_show_config)


def cmd_show_config(args) -> int:
    import yaml

    cfg = config_of(args, "train")
    if not args.all:  # the run's effective values: the chosen method's block only, nulls resolved
        from fastadv.methods import effective_train_config

        cfg = effective_train_config(cfg)
    print(yaml.safe_dump(cfg, sort_keys=False), end="")
    return 0


def add_methods(sub) -> None:
    p = sub.add_parser("methods", help="the training methods and their parameters (Markdown table)")
    p.set_defaults(func=cmd_methods)


def cmd_methods(args) -> int:
    from fastadv.methods.registry import methods_table

    print(methods_table())
    return 0


# The group's commands, in the order `fastadv --help` lists them: name -> the function adding its parser.
COMMANDS = {
    "figure": add_figure, "targets": add_targets, "fidelity": add_fidelity, "estimate": add_estimate,
    "config": add_config, "methods": add_methods,
}
