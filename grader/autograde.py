"""`python -m grader autograde ASSIGNMENT`: grade a whole class in parallel, each submission isolated.

nbgrader does the grading; this module only orchestrates it:

- The coordinator (this process) owns the course's gradebook; nobody else writes it.
- Each submission becomes one Dask task with a self-contained *scratch course*: the course's
  nbgrader_config.py, the assignment's source/ folder, the one student's submitted/ folder and a
  small gradebook that knows only this assignment (made once by nbgrader's generate_assignment).
  The task runs `nbgrader autograde ASSIGNMENT --student STUDENT` there, sandboxed (grader/sandbox.py:
  own process, no network, read-only file system but for its scratch course, memory and CPU-time
  limits), and sends back the autograded notebook and the scores nbgrader wrote into the scratch
  gradebook. Files travel inside the task, so workers need no shared file system (Slurm or
  Kubernetes clusters work the same; the workers need this package and nbgrader installed).
- As each task finishes, the coordinator copies the notebook into autograded/ and the scores into
  the course's gradebook (nbgrader's Gradebook API), one submission at a time: no concurrent
  writers, and whatever was graded is kept if the run is interrupted.
- Each task runs the stages of grader/execute.py (check_files, execute_isolated, rescore_clean, verify); the
  course folder and gradebook are grader/course.py's.
- After nbgrader, a second sandboxed child that never ran student code re-measures every accuracy check
  from the models the notebook handed in (grader/clean.py, grader/checks.py) and decides every test cell
  from the values it handed in (grader/decide): a checked cell scores its points if every check passed
  and 0 otherwise, whatever the kernel said, and disagreements flag the submission. Submitted
  notebooks are also read for lines that replace library functions (grader/integrity.py).
- A submission that crashed, ran out of time or memory scores 0 for what it lost, with the reason
  recorded in the gradebook (as the cells' automatic comment) and in autograded/<s>/<a>/.grader.json.
- .grader.json also keeps a hash of the submitted files and the assignment's source: a re-run skips
  graded, unchanged submissions (unless --force).
- A worker lost mid-run (killed, crashed, its node gone) takes nothing with it: the scheduler sends the
  submissions it held to other workers, which grade them from the start, and the run ends with a line
  "worker lost; N submission(s) re-run on other workers: ..." (WorkersLost). Whatever it was running dies
  with it (grader/sandbox.py: die_with_parent); the scratch folders it leaves are swept once their owner is
  gone (grader/execute.py), at the end of such a run and at the start of every run.
- An assignment whose notebooks do not use mnistlab (another nbgrader course) is graded by nbgrader alone,
  without the clean checks, and nothing imports PyTorch: neither this process nor the workers.
"""

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from grader import DEFAULT_MEMORY, DEFAULT_TIMEOUT, GraderError  # noqa: F401 (the defaults: callers use autograde.DEFAULT_*)
from grader.course import (RECORD, course_directory, data_dir, files_under, fingerprint, hidden_paths,  # noqa: F401
                           read_record, record, submitted_students, template_gradebook)  # (RECORD, read_record: re-exported)
from grader.cluster import Starting, WorkersLost, warm_workers
from grader.execute import failed, grade_submission


# --- the coordinator --------------------------------------------------------------------------

def parse_size(text):
    """'4G', '512M', '1.5GiB' or bytes -> bytes."""
    text = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    try:
        return int(float(text[:-1]) * units[text[-1]]) if text and text[-1] in units else int(text)
    except ValueError:
        raise GraderError(f"cannot read the memory size {text!r}: write e.g. 4G or 512M") from None


def plan(cd, assignment, students=None, force=False, **settings):
    """The jobs to grade for `assignment`, and the records of those skipped: graded and unchanged, that is
    their files hash as their RECORD says, and the gradebook in use holds the grades the RECORD says were
    written (course.holds). The gradebook is the truth: a RECORD alone (say, of a run into another --db)
    skips nothing."""
    from grader.course import graded_in_gradebook, holds, shown

    source = Path(cd.format_path(cd.source_directory, ".", assignment))
    if not source.is_dir():
        raise GraderError(f"no assignment {assignment!r}: {source} does not exist")
    everyone = submitted_students(cd, assignment)
    wanted = [s for s in everyone if s in students] if students else everyone
    source_files = files_under(source)
    config_file = Path(cd.root, "nbgrader_config.py")
    root = Path(cd.root)
    jobs, skipped, held, missing = [], {}, None, []
    for student in wanted:
        submitted = Path(cd.format_path(cd.submitted_directory, student, assignment))
        refused = []
        files = files_under(submitted, refused)
        digest = fingerprint(files, source_files)
        previous = read_record(cd, assignment, student)
        if not force and previous and previous.hash == digest:
            if held is None:  # read once, and only when some submission could be skipped
                held = graded_in_gradebook(cd, assignment)
            if holds(previous, held.get(student)):
                skipped[assignment, student] = previous
                continue
            missing.append(student)
        payload = {str(submitted.relative_to(root) / name): data for name, data in files.items()}
        payload.update({str(source.relative_to(root) / name): data for name, data in source_files.items()})
        if config_file.exists():
            payload["nbgrader_config.py"] = config_file.read_bytes()
        jobs.append(dict(settings, assignment=assignment, student=student, hash=digest, files=payload, refused=refused,
                         course_id=cd.course_id,
                         autograded=str(Path(cd.format_path(cd.autograded_directory, student, assignment)).relative_to(root))))
    if missing:
        print(f"{len(missing)} submission(s) of {assignment} graded before but not (or not so) in the gradebook "
              f"{shown(cd.db_url)}: graded again")
    return jobs, skipped


def outcome(future, job):
    """The result of a grading task, or a failure saying why the task itself failed (e.g. its worker died)."""
    try:
        return future.result()
    except Exception as error:
        return replace(failed(job, f"grading infrastructure: {type(error).__name__}: {error}"[:500], time.perf_counter()),
                       seconds=None)


TIME_LIMITS = ("time limit:", "wall-time limit:")  # how Zygote.run's reasons for a time kill begin


def time_limited(result):
    """True if the submission lost points to a time limit: killed for time, or a cell interrupted by one."""
    return ((result.status == "failed" and (result.reason or "").startswith(TIME_LIMITS))
            or "CellTimeoutError" in result.cell_errors.values())


def regraded(result):
    """Note on a second grading (alone on the machine) what happened, so that nobody reads a 0 as a busy machine."""
    result = replace(result, cell_notes=dict(result.cell_notes))
    if time_limited(result):
        note = "ran past a time limit twice: in the class run, and again graded alone on the machine"
        if result.status == "failed":
            result.reason = f"{result.reason} ({note})"
        for cell, error in result.cell_errors.items():
            if error == "CellTimeoutError":
                result.cell_notes[cell] = f"this cell {note}: it scores 0"
    else:
        result.cell_notes["time-limit"] = ("a time limit stopped this submission in the class run (a busy machine); "
                                           "it was graded again alone, and that grade counts")
    return result


def done(cd, job, result, results, failures):
    """Record one result and remember it (and its failure, to print at the end). A result that cannot be
    written (record retries first) is reported for its submission, and the batch goes on."""
    try:
        summary = record(cd, result)
    except Exception as error:
        failures.append(f"NOT RECORDED {job['assignment']}/{job['student']}: {type(error).__name__}: {error} "
                        "(its RECORD was not written: run autograde again to grade it)")
        return
    results[job["assignment"], job["student"]] = summary
    if summary.status == "failed":
        failures.append(f"FAILED {job['assignment']}/{job['student']}: {summary.reason}")


def autograde(assignment, course=".", students=None, **options):
    """Grade every submission of `assignment`; returns {student: its RECORD, a SubmissionResult}. See the module docstring."""
    results = autograde_many([assignment], course, students=students, **options)
    absent, unrecorded = unaccounted([assignment], course, results, students, options.get("db"))
    if absent or unrecorded:
        raise GraderError("; ".join(([f"no submission of {assignment} from {', '.join(absent)}: run `collect` first"]
                                     if absent else []) +
                                    ([f"graded but not recorded: {', '.join(unrecorded)} (run autograde again)"]
                                     if unrecorded else [])))
    return {student: summary for (_, student), summary in results.items()}


def unaccounted(assignments, course, results, students=None, db=None):
    """(students asked for without a submission, "assignment/student" submissions that have no result: their
    grades could not be written, see done())."""
    cd, _ = course_directory(course, db)
    submitted = {(a, s) for a in assignments for s in submitted_students(cd, a) if not students or s in students}
    absent = sorted(set(students or ()) - {s for _, s in submitted})
    return absent, sorted(f"{a}/{s}" for a, s in submitted - set(results))


def clean_checks_apply(cd, assignment):
    """True if the grader's own clean checks (grader/clean.py, grader/decide) apply to `assignment`: its notebooks use
    mnistlab, the only way a notebook hands models and values in. Any other nbgrader course is graded by nbgrader
    alone, and then neither this process nor the workers import PyTorch."""
    source = Path(cd.format_path(cd.source_directory, ".", assignment))
    return any(b"mnistlab" in data for name, data in files_under(source).items() if name.endswith(".ipynb"))


def autograde_many(assignments, course=".", db=None, scheduler=None, workers=None, force=False, students=None,
                   timeout=DEFAULT_TIMEOUT, memory=DEFAULT_MEMORY, cell_timeout=None, allow_network=False,
                   progress=True, client=None):
    """Grade every submission of each assignment, all in one pool; returns {(assignment, student): its RECORD}."""
    from dask.distributed import as_completed
    from tqdm.auto import tqdm

    cd, config = course_directory(course, db)
    settings = dict(timeout=timeout, memory=parse_size(memory), cell_timeout=cell_timeout, isolate_network=not allow_network,
                    hide=hidden_paths(cd))
    jobs, results = [], {}
    for assignment in assignments:
        more, skipped = plan(cd, assignment, students, force, **settings)
        jobs += more
        results.update(skipped)
    if results:
        print(f"{len(results)} submission(s) already graded and unchanged: skipped (--force to grade them again)")
    if not jobs:
        return results

    checked = {a: clean_checks_apply(cd, a) for a in sorted({job["assignment"] for job in jobs})}
    where = ("the caller's Dask cluster" if client else f"the Dask cluster at {scheduler}" if scheduler else
             f"a local Dask cluster of {workers or os.cpu_count()} worker(s)")
    print(f"autograde: {len(jobs)} submission(s) to grade; preparing the template gradebook"
          f"{'s' if len(checked) > 1 else ''} of {', '.join(checked)}"
          f"{', the clean checks (data, baselines)' if any(checked.values()) else ''} and {where}...", flush=True)
    # The cluster starts (its workers start their zygotes) while this process makes the templates: neither waits.
    starting = None if client else Starting(scheduler, workers, clean=any(checked.values()))
    try:
        templates = {a: template_gradebook(cd, config, a) for a in checked}
        baselines, data = {}, None
        if any(checked.values()):
            from grader import clean  # (here, not at the top: the workers import this module, and need no PyTorch)

            data = str(data_dir())
        for assignment in [a for a in templates if checked[a]]:
            # the data every sandbox reads (cached now), and the runs all students share
            clean.warm_data(assignment)
            baselines[assignment] = clean.baselines(assignment)
    except BaseException:
        if starting:
            starting.close()
        raise
    own_client, cluster = starting.result() if starting else (client, None)
    if client:
        warm_workers(own_client, clean=any(checked.values()))
    failures = []

    def task(job):  # what a worker needs to grade `job`
        a = job["assignment"]
        return dict(job, template=templates[a], baselines=baselines.get(a), clean=checked[a],
                    data_dir=data if checked[a] else None)

    lost = WorkersLost(own_client)
    by_key = {}  # every task of this run (the re-grades too) -> its job
    try:
        futures = [own_client.submit(grade_submission, task(job), pure=False,
                                     key=f"grade-{job['assignment']}-{job['student']}-{job['hash'][:12]}") for job in jobs]
        by_key.update({f.key: job for f, job in zip(futures, jobs)})
        bar = tqdm(total=len(futures), desc=f"autograde {assignments[0] if len(assignments) == 1 else f'{len(assignments)} assignments'}", unit="submission",
                   disable=not progress, file=sys.stdout)
        again = []  # submissions that hit a time limit: graded once more, alone, before a 0 is recorded
        for future in as_completed(futures):
            job = by_key[future.key]
            result = outcome(future, job)
            future.release()
            if time_limited(result):
                again.append(job)
                continue
            done(cd, job, result, results, failures)  # as soon as it is done: an interrupted run keeps it
            bar.update()
            bar.set_postfix(failed=len(failures))
        for job in again:  # one at a time: nothing else of this run shares the machine with it
            future = own_client.submit(grade_submission, task(job), pure=False)
            by_key[future.key] = job
            done(cd, job, regraded(outcome(future, job)), results, failures)
            bar.update()
            bar.set_postfix(failed=len(failures))
        bar.close()
        failures[:0] = lost.report(by_key)
    finally:
        lost.stop()
        if not client:
            own_client.close()
            if cluster:
                cluster.close()
    for line in failures:
        print(line)
    for (assignment, student), summary in sorted(results.items()):
        for cell, error in summary.cell_errors.items():
            if error == "CellTimeoutError":
                print(f"TIMEOUT {assignment}/{student}: cell {cell} ran past the cell time limit twice (the second "
                      "time graded alone) and scored 0")
    return results
