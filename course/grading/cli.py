"""`course grade` (filled in by the grading module)."""
from __future__ import annotations

import argparse


def add_grade_parser(sub, func) -> None:
    p = sub.add_parser("grade", help="grade submissions with the hidden tests")
    p.add_argument("notebooks", nargs="*")
    p.set_defaults(func=func)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError
