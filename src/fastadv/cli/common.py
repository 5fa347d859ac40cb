"""What the commands share: the params file's flag, the arguments that choose a config (``--params``, ``--scale``,
``--experiment``, ``--resolved``, ``--variant``/``--eps``/``--seed``, ``--set``) declared once, and the config
they resolve to."""
from __future__ import annotations

import argparse
import json
import sys

from fastadv.errors import FastAdvError

DEFAULT_CONFIG = "params.yaml"


class FormerParamsFlag(argparse.Action):
    """``--config``, the params file's flag before ``--params``: still read, with a note, since Snakemake's
    ``--config`` means key=value pairs and one name should mean one thing."""

    def __call__(self, parser, namespace, values, option_string=None):
        print("fastadv: note: --config FILE is now --params FILE (Snakemake's --config takes key=value pairs)",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_params_arg(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument("--params", dest="config", default=None, metavar="FILE",
                   help=help or f"params file (default: ./{DEFAULT_CONFIG}, else the packaged one)")
    p.add_argument("--config", dest="config", action=FormerParamsFlag, help=argparse.SUPPRESS)


def add_config_args(p: argparse.ArgumentParser, section: str = "train") -> None:
    add_params_arg(p)
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


def study_of(args):
    from fastadv.config.params import default_params
    from fastadv.config.study import Study

    return Study.load(args.config or default_params(), args.scale)


def resolved_json(args, section: str | None = None) -> dict:
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


def config_of(args, section: str) -> dict:
    """The run's ``train``/``evaluate`` config: ``--resolved`` as it is, else the params file
    resolved for --scale/--experiment (and --variant/--eps/--seed), then ``--set``."""
    from fastadv.config.study import apply_sets

    if args.resolved is not None:
        return apply_sets(resolved_json(args, section), section, args.sets)
    study = study_of(args)
    if section == "train":
        return study.train_config(args.experiment, args.variant, args.eps, args.seed, args.sets)
    return study.eval_config(args.experiment, args.sets)


def add_monitor_args(p) -> None:
    """Run directories and where the CO rule's keys come from for runs that predate them (co-flags, curves)."""
    p.add_argument("runs", nargs="+", help="run directories (summary.json, history.csv)")
    add_params_arg(p, f"params file whose train.monitor supplies the rule's keys a run's config predates "
                       f"(default: ./{DEFAULT_CONFIG}, else the packaged one)")
    p.add_argument("--scale", default=None, help="apply scales.<SCALE>'s monitor overrides to those keys")


def monitor_defaults(args) -> dict:
    """The params file's train.monitor (at --scale): the rule's keys for runs whose config predates them."""
    return study_of(args).train_config(None, None, None, None, [])["monitor"]
