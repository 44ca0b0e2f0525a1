"""Instructor tooling: `python -m grader COMMAND` (run from the course folder).

    build   regenerate notebooks/ (student versions) and solutions/ (executed references) from source/
    demo    the README's main job
"""

import argparse
import sys

from grader import build, solutions


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m grader", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("build", help="regenerate notebooks/ and solutions/ from source/")
    p.add_argument("assignments", nargs="*", help="only these assignments (default: all)")
    p.add_argument("--course", default=".", help="the nbgrader course folder (default: here)")
    p.add_argument("--no-solutions", action="store_true", help="only the student versions")
    p = commands.add_parser("demo", help="execute every reference solution and print a results table")
    p.add_argument("--course", default=".")
    args = parser.parse_args(argv)

    if args.command == "build":
        build.build(args.course, args.assignments or None, solutions=not args.no_solutions)
    elif args.command == "demo":
        rows = solutions.run_all(args.course)
        print(solutions.format_table(rows))
        return 1 if any(row["error"] for row in rows) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
