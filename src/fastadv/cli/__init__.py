"""``fastadv`` command line: the user's commands first, the maintainers' tools in their own group (``GROUPS``), one
module per group (``run``, ``figures``, ``tools``), each command's parser beside its handler; the arguments that
choose a config are declared once (``common``).

Every error that is the user's to fix is printed as one line
(``fastadv: error: …``) with exit code 2; a pre-empted training exits 75.
"""
from __future__ import annotations

import argparse
import sys

from fastadv.cli import figures, run, tools
from fastadv.errors import FastAdvError

# `fastadv --help` lists the commands in these groups, in this order (a test checks each is in one); each group's
# commands and their order are its module's COMMANDS.
_MODULES = {"Run experiments": run, "Figures, tables and what is configured": figures, "Maintainer tools": tools}
GROUPS = {title: tuple(module.COMMANDS) for title, module in _MODULES.items()}


def build_parser() -> argparse.ArgumentParser:
    from fastadv import __version__

    p = argparse.ArgumentParser(prog="fastadv", description="Fast adversarial training and GradAlign, reproducibly.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"fastadv {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of the commands below")
    for module in _MODULES.values():
        for add_parser in module.COMMANDS.values():
            add_parser(sub)
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
