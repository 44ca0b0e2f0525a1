"""Instructor tooling: `python -m grader COMMAND` (run from the course folder, or pass --course).

    build                 regenerate notebooks/ (student versions) and solutions/ (executed references) from source/
    collect SOURCE        copy submissions (a <student>/<assignment>/ folder, or an LMS zip) into submitted/
    autograde ASSIGNMENT  grade every submission in parallel (this machine's cores, or a Dask cluster)
    export                grades.csv (per assignment) and exercises.csv (per graded cell)
    feedback ASSIGNMENT   per-student HTML feedback (nbgrader's, without hidden tests; grader's figures and diagnosis)
    report ASSIGNMENT     one HTML class report per assignment: scores, pitfalls, run times, flagged submissions
    release               what students receive: the notebooks, mnistlab, a README and `make lab`; no hidden text
    calibrate ASSIGNMENT  measure the thresholds on this machine's data (the real datasets or the stand-ins)
    demo                  the README's main job: a sample class, collected, autograded, exported

Works on any nbgrader course folder (one with nbgrader_config.py and source/).
"""

import argparse
import sys

# The command line parses its arguments before it imports anything heavy (nbgrader, torch, Dask):
# `--help` and a mistyped option answer at once. Each command imports its module when it runs.
from grader import DEFAULT_MEMORY, DEFAULT_REGEXP, DEFAULT_TIMEOUT, GraderError


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m grader", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("build", help="regenerate notebooks/ and solutions/ from source/")
    p.add_argument("assignments", nargs="*", help="only these assignments (default: all)")
    p.add_argument("--course", default=".", help="the nbgrader course folder (default: here)")
    p.add_argument("--no-solutions", action="store_true", help="only the student versions")

    p = commands.add_parser("collect", help="copy submissions into the course's submitted/ folder")
    p.add_argument("source", help="a folder <student>/<assignment>/*.ipynb, or an LMS .zip (needs --assignment)")
    p.add_argument("--course", default=".")
    p.add_argument("--assignment", help="the assignment (required for a zip; for a folder: only this one)")
    p.add_argument("--regexp", help="zip file names: FileNameCollectorPlugin.named_regexp with (?P<student_id>) "
                                    f"and (?P<file_id>) (default: the course config's, else {DEFAULT_REGEXP})")
    p.add_argument("--collector", metavar="MODULE.CLASS",
                   help="zip file names: an nbgrader collector plugin, a FileNameCollectorPlugin subclass (as "
                        "`nbgrader zip_collect --collector`; e.g. plugin.CustomPlugin from plugin.py in the course "
                        "folder), e.g. to read the LMS's submission times")

    p = commands.add_parser("autograde", help="grade every submission of ASSIGNMENT, in parallel and isolated")
    p.add_argument("assignments", nargs="+", metavar="ASSIGNMENT", help="one or more assignments, graded in one pool")
    p.add_argument("--course", default=".")
    p.add_argument("--db", help="gradebook URL (default: the course's, sqlite:///<course>/gradebook.db); "
                                "e.g. postgresql://user@host/course for a shared gradebook")
    p.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786 "
                                       "(default: a local cluster, one worker per core)")
    p.add_argument("--workers", type=int, help="local workers (default: all cores)")
    p.add_argument("--student", action="append", help="only this student (repeat for more)")
    p.add_argument("--force", action="store_true", help="grade again even submissions graded and unchanged")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"CPU-time limit per submission in seconds, its kernel included (default {DEFAULT_TIMEOUT}; "
                        "wall time is limited to 3x that)")
    p.add_argument("--cell-timeout", type=int,
                   help="time limit per cell in seconds (default: the course's Execute.timeout, nbgrader's 30 s if unset)")
    p.add_argument("--memory", default=DEFAULT_MEMORY,
                   help=f"memory limit per submission, its kernel included (default {DEFAULT_MEMORY})")
    p.add_argument("--allow-network", action="store_true", help="let notebooks use the network (default: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = commands.add_parser("export", help="grades.csv and exercises.csv from the gradebook")
    p.add_argument("--course", default=".")
    p.add_argument("--db")
    p.add_argument("--to", default="exports", help="output folder (default: <course>/exports)")
    p.add_argument("--assignment", action="append", help="only this assignment (repeat for more)")

    p = commands.add_parser("feedback", help="per-student HTML feedback into <course>/feedback/")
    p.add_argument("assignments", nargs="+", metavar="ASSIGNMENT")
    p.add_argument("--course", default=".")
    p.add_argument("--db", help="gradebook URL (default: the course's)")
    p.add_argument("--student", action="append", help="only this student (repeat for more)")

    p = commands.add_parser("report", help="one HTML class report per assignment into <course>/reports/")
    p.add_argument("assignments", nargs="+", metavar="ASSIGNMENT")
    p.add_argument("--course", default=".")
    p.add_argument("--db", help="gradebook URL (default: the course's)")
    p.add_argument("--to", default="reports", help="output folder (default: <course>/reports)")

    p = commands.add_parser("release", help="what students receive: dist/<course>-student/ (+ .zip), no hidden text")
    p.add_argument("--course", default=".")
    p.add_argument("--to", default="dist", help="output folder (default: <here>/dist)")
    p.add_argument("--exchange", help="also nbgrader release_assignment every assignment into this exchange folder")

    p = commands.add_parser("calibrate", help="measure the thresholds on this machine's data (the course's rule)")
    p.add_argument("assignments", nargs="+", metavar="ASSIGNMENT")
    p.add_argument("--course", default=".")
    p.add_argument("--seeds", type=int, default=5, help="runs of the reference, one per seed shift (default 5, at least 3)")
    p.add_argument("--write", action="store_true", help="write the thresholds and their measurements into the table")

    p = commands.add_parser("demo", help="a sample class for every assignment: collect, autograde, export, table")
    p.add_argument("--course", default=".", help="the course whose source/ to use (it is not modified)")
    p.add_argument("--scratch", default="build/demo-course", help="where the demo course is made (default build/demo-course)")
    p.add_argument("--workers", type=int)
    p.add_argument("--cell-timeout", type=int, default=None, help="cell time limit (default: see grader/demo.py)")
    p.add_argument("--assignment", action="append", help="only this assignment (repeat for more)")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except GraderError as error:  # the library raises; the command line says what to do and exits
        raise SystemExit(str(error)) from None


def run(args):
    """Run the parsed command; returns the exit code."""
    if args.command == "build":
        from grader import build

        build.build(args.course, args.assignments or None, solutions=not args.no_solutions)
    elif args.command == "collect":
        from grader import collect

        collect.collect(args.source, args.course, args.assignment, args.regexp, args.collector)
    elif args.command == "autograde":
        from grader import autograde

        results = autograde.autograde_many(args.assignments, args.course, db=args.db, scheduler=args.scheduler,
                                      workers=args.workers, force=args.force, students=args.student,
                                      timeout=args.timeout, memory=args.memory, cell_timeout=args.cell_timeout,
                                      allow_network=args.allow_network, progress=not args.no_progress)
        graded = [r for r in results.values() if r.status == "graded"]
        print(f"{len(graded)} of {len(results)} submission(s) graded; "
              f"{len(results) - len(graded)} could not be (scored 0, reason above)")
        absent, unrecorded = autograde.unaccounted(args.assignments, args.course, results, args.student)
        if unrecorded:
            print(f"{len(unrecorded)} submission(s) graded but not recorded (NOT RECORDED above): {', '.join(unrecorded)}")
        if absent:
            print(f"no submission from {', '.join(absent)}: run `collect` first")
        if absent or unrecorded:
            return 1
    elif args.command == "export":
        from grader import export

        export.export(args.course, args.db, args.to, args.assignment)
    elif args.command == "feedback":
        from grader import feedback

        for assignment in args.assignments:
            try:
                pages = feedback.feedback(assignment, args.course, args.db, args.student)
            except feedback.LeakError as error:  # the safe pages are written; the leaking ones are not
                raise SystemExit(f"feedback for {assignment}: {error}") from None
            print(f"{assignment}: feedback for {len(pages)} student(s) in {args.course}/feedback/<student>/{assignment}/")
    elif args.command == "report":
        from grader import report

        for assignment in args.assignments:
            print(f"wrote {report.report(assignment, args.course, args.db, args.to)}")
    elif args.command == "release":
        from grader import release

        return release.main(args.course, args.to, args.exchange)
    elif args.command == "calibrate":
        from grader import calibrate

        try:
            return calibrate.main(args.assignments, args.course, args.seeds, args.write)
        except (calibrate.CalibrationError, FileNotFoundError, ValueError) as error:
            raise SystemExit(f"calibrate: {error}") from None
    elif args.command == "demo":
        from grader import demo

        return demo.main(args.course, args.scratch, workers=args.workers, cell_timeout=args.cell_timeout,
                         only=args.assignment)
    return 0


if __name__ == "__main__":
    sys.exit(main())
