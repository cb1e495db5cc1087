"""The `attnlab` command.

    attnlab check [EXERCISE ...] [--src DIR] [-v]     your progress (grades src/ by default)
    attnlab grade SUBMISSION [--json FILE] [EXERCISE ...]
    attnlab grade-batch SUBMISSIONS_DIR --out RESULTS_DIR [--workers N]
    attnlab build [--check]                          regenerate stubs and notebooks from solutions/
    attnlab classroom ...                            nbgrader course (see docs/classroom.md)
    attnlab list                                     every exercise with its points
    attnlab bench [--quick] [--learner] [--lengths ...] ...  naive, SDPA and the tiled kernels timed (bench.py)
    attnlab cards [--out FILE] [--check]             the interview review deck, docs/cards.html (cards.py)
    attnlab latency [--notebooks NN ...] [--skip ...]  check, grade, notebook and nbgrader times (latency.py)
"""
import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        sys.stderr.write(f"attnlab: {message} (see `attnlab {self.prog.split()[-1]} --help`)\n"
                         if " " in self.prog else f"attnlab: {message} (see `attnlab --help`)\n")
        sys.exit(2)


def _parser():
    p = _Parser(prog="attnlab", description="Attention, from Intuition to Kernels: build, check and grade.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    c = sub.add_parser("check", help="grade your own src/ and show a progress table")
    c.add_argument("exercises", nargs="*", metavar="EXERCISE", help="exercise ids or module names (default: all)")
    c.add_argument("--src", default=None, help="folder containing attnlab/ (default: the course's src/)")
    c.add_argument("-v", "--verbose", action="store_true", help="show every test case")
    c.add_argument("--timeout", type=float, default=None, help="seconds per exercise (default 20)")

    g = sub.add_parser("grade", help="grade the attnlab/ package in a submission folder")
    g.add_argument("submission", metavar="SUBMISSION")
    g.add_argument("exercises", nargs="*", metavar="EXERCISE")
    g.add_argument("--json", dest="json_path", metavar="FILE", help="write the grade JSON here ('-' for stdout)")
    g.add_argument("--timeout", type=float, default=None, help="seconds per exercise (default 20)")
    g.add_argument("--seed", type=int, default=None, help="input seed (default $ATTNLAB_GRADE_SEED or 0)")
    g.add_argument("-v", "--verbose", action="store_true")

    b = sub.add_parser("grade-batch", help="grade one folder per student, resumably")
    b.add_argument("submissions", metavar="SUBMISSIONS_DIR")
    b.add_argument("--out", required=True, metavar="RESULTS_DIR")
    b.add_argument("--workers", type=int, default=1)
    b.add_argument("--timeout", type=float, default=None, help="seconds per exercise (default 20)")
    b.add_argument("--seed", type=int, default=None)
    b.add_argument("--assignment", default=None,
                   help="grade <student>/<ASSIGNMENT>/src/attnlab (nbgrader's submitted/ layout)")
    b.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="grade on a Dask cluster: the scheduler's address, e.g. tcp://10.0.0.5:8786 (docs/cluster.md)")
    b.add_argument("--cluster", default=None, metavar="local:N",
                   help="grade on a Dask cluster of N worker processes on this machine")
    b.add_argument("exercises", nargs="*", metavar="EXERCISE")

    bl = sub.add_parser("build", help="regenerate src/ stubs and notebooks/ from solutions/")
    bl.add_argument("--check", action="store_true", help="fail if generated files are out of date")

    sub.add_parser("list", help="list exercises")

    sub.add_parser("bench", add_help=False, help="naive attention, PyTorch's SDPA and the tiled kernels (the course's and, "
                   "with --learner, yours) side by side on CPU and GPU (see `attnlab bench --help`)")

    sub.add_parser("cards", add_help=False, help="write the interview review deck (see `attnlab cards --help`)")
    sub.add_parser("latency", add_help=False, help="time check, grade, every notebook and nbgrader autograde "
                   "against their targets (see `attnlab latency --help`)")

    cl = sub.add_parser("classroom", help="nbgrader classroom workflow (see docs/classroom.md)",
                        description="source COURSE_DIR [--notebooks NN ...] [--course-id ID] | release COURSE_DIR "
                                    "ASSIGNMENT | verify-release COURSE_DIR ASSIGNMENT | push-grades COURSE_DIR "
                                    "ASSIGNMENT RESULTS_DIR   (see docs/classroom.md)")
    cl.add_argument("action", choices=["source", "release", "verify-release", "push-grades"])
    cl.add_argument("args", nargs=argparse.REMAINDER)
    return p


def _parse(argv):
    """Subcommand first, then that subcommand's own parser, so options and exercise ids may be mixed."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        return parser.parse_args(argv)
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = subparsers.choices.get(argv[0])
    if sub is None:
        return parser.parse_args(argv)  # reports the invalid choice in one line
    namespace = argparse.Namespace(command=argv[0])
    if argv[0] == "classroom":
        return sub.parse_args(argv[1:], namespace)
    return sub.parse_intermixed_args(argv[1:], namespace)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its own parser and messages (autograde/bench.py)
        from .bench import main as bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["cards"]:  # its own parser and messages (autograde/cards.py)
        from .cards import main as cards_main

        return cards_main(argv[1:])
    if argv[:1] == ["latency"]:  # its own parser and messages (autograde/latency.py)
        from .latency import main as latency_main

        return latency_main(argv[1:])
    args = _parse(argv)
    from .runner import UsageError
    from .sandbox import SandboxError

    try:
        return _dispatch(args)
    except (UsageError, SandboxError) as exc:
        sys.stderr.write(f"attnlab: {exc}\n")
        return 2
    except OSError as exc:  # an unwritable --json or --out path, a full disk...
        sys.stderr.write(f"attnlab: {exc.strerror or exc}: {exc.filename or ''}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("attnlab: interrupted\n")
        return 130


def _dispatch(args):
    if args.command is None:
        _parser().print_help()
        return 2
    if args.command == "build":
        from .build import BuildError, build

        try:
            return build(check=args.check)
        except BuildError as exc:
            sys.stderr.write(f"attnlab build: {exc}\n")
            return 2
    if args.command == "list":
        from . import registry

        for ex in registry.all_exercises():
            print(f"{ex.id:40s} {ex.profile:10s} {ex.kind:8s} {ex.points:g} points  {len(ex.cases):2d} cases  "
                  f"{len(ex.mutants):2d} mutants  {len(ex.alternatives)} alternatives")
        return 0
    if args.command == "check":
        from .report import progress_table
        from .runner import grade_submission

        src = Path(args.src) if args.src else ROOT / "src"
        report = grade_submission(src, args.exercises or None, timeout=args.timeout, seed=0)
        print(progress_table(report, verbose=args.verbose))
        return 0 if report["total"] == report["max_total"] else 1
    if args.command == "grade":
        from .report import progress_table
        from .runner import grade_submission

        report = grade_submission(args.submission, args.exercises or None, timeout=args.timeout, seed=args.seed)
        text = json.dumps(report, indent=2, sort_keys=False) + "\n"
        if args.json_path == "-":
            sys.stdout.write(text)
        else:
            if args.json_path:
                from .batch import atomic_write

                atomic_write(Path(args.json_path), text)
            print(progress_table(report, verbose=args.verbose))
        return 0
    if args.command == "grade-batch":
        from .batch import grade_batch

        return grade_batch(args.submissions, args.out, workers=args.workers, timeout=args.timeout,
                           seed=args.seed, exercise_ids=args.exercises or None, assignment=args.assignment,
                           scheduler=args.scheduler, cluster=args.cluster)
    if args.command == "classroom":
        from .classroom import main as classroom_main

        return classroom_main(args.action, args.args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
