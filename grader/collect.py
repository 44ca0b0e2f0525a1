"""`python -m grader collect SOURCE`: bring submissions into the course's submitted/ folder.

SOURCE is either
- a folder laid out `<student>/<assignment>/*.ipynb` (what `nbgrader collect` or a shared drive gives), or
- an LMS download (a zip, possibly of zips), named as nbgrader's `zip_collect` expects: every file
  name says whose it is, matched by `FileNameCollectorPlugin.named_regexp` (from the course's
  nbgrader_config.py, or --regexp), default `<student>_<notebook>.ipynb`. Pass --assignment.

nbgrader's own plugins do the LMS part (ExtractorPlugin unpacks, FileNameCollectorPlugin reads the
names). Problems are reported and skipped, never fatal: a notebook with the wrong name is renamed
when that is unambiguous (one notebook submitted, one expected), empty folders are listed, and of
two submissions for the same student (e.g. `Alice/` and `alice/`, or a file uploaded twice) the
newest is kept.
"""

import os
import shutil
import tempfile
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from grader import DEFAULT_REGEXP, GraderError
from grader.course import course_directory


def expected_notebooks(cd, assignment):
    """Notebook names the assignment expects: from the student version, else from the source."""
    for folder in (cd.release_directory, cd.source_directory):
        names = sorted(p.name for p in Path(cd.format_path(folder, ".", assignment)).glob("*.ipynb"))
        if names:
            return names
    return []


def from_folder(folder):
    """[(student, assignment, file path, name in the submission, timestamp or None)] and problems."""
    entries, problems = [], []
    for student in sorted(p for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith(".")):
        assignments = [p for p in sorted(student.iterdir()) if p.is_dir() and not p.name.startswith(".")]
        if not assignments:
            problems.append(f"empty folder: {student} (no <assignment>/ folder inside)")
        for assignment in assignments:
            files = [p for p in sorted(assignment.rglob("*")) if p.is_file() and ".ipynb_checkpoints" not in p.parts]
            if not files:
                problems.append(f"empty folder: {assignment}")
            for path in files:
                entries.append((student.name, assignment.name, path, str(path.relative_to(assignment)), None))
    return entries, problems


def from_zip(archive, assignment, regexp):
    """The same, from an LMS zip, with nbgrader's zip_collect plugins. Extracts into a temp folder."""
    from nbgrader.plugins.zipcollect import ExtractorPlugin, FileNameCollectorPlugin
    from nbgrader.utils import parse_utc

    scratch = tempfile.mkdtemp(prefix="grader-collect-")
    downloaded = Path(scratch, "archive")
    downloaded.mkdir()
    shutil.copy(archive, downloaded)
    ExtractorPlugin().extract(str(downloaded), str(Path(scratch, "extracted")))
    collector = FileNameCollectorPlugin(named_regexp=regexp)
    entries, problems = [], []
    for path in sorted(p for p in Path(scratch, "extracted").rglob("*") if p.is_file()):
        info = collector.collect(str(path))
        if not info:
            problems.append(f"skipped {path.relative_to(Path(scratch, 'extracted'))}: its name does not match "
                            f"the collector's regular expression {regexp!r} (or it is not a notebook)")
            continue
        timestamp = parse_utc(info["timestamp"]) if info.get("timestamp") else None
        entries.append((info["student_id"], assignment, path, info["file_id"], timestamp))
    return entries, problems, scratch


def collect(source, course=".", assignment=None, regexp=None):
    """Copy submissions from `source` into submitted/; returns the list of problems (also printed)."""
    cd, config = course_directory(course)
    source = Path(source)
    scratch = None
    if source.is_dir():
        entries, problems = from_folder(source)
        if assignment:
            entries = [e for e in entries if e[1] == assignment]
    elif source.is_file() and source.suffix in (".zip", ".gz"):
        if not assignment:
            raise GraderError("collecting from an LMS zip: say which assignment it holds with --assignment NAME")
        regexp = regexp or config.get("FileNameCollectorPlugin", {}).get("named_regexp") or DEFAULT_REGEXP
        entries, problems, scratch = from_zip(source, assignment, regexp)
    else:
        raise GraderError(f"{source}: not a folder of <student>/<assignment>/ nor a .zip file")

    sources = Path(cd.root, cd.source_directory)
    known = {p.name for p in sources.iterdir() if p.is_dir()} if sources.is_dir() else set()
    # Group by (student, assignment); a student id that differs only in case or spaces is the same student.
    groups = defaultdict(list)
    for student, name, path, file_id, timestamp in entries:
        if name not in known:
            problems.append(f"skipped {path}: no assignment {name!r} in the course ({', '.join(sorted(known))})")
            continue
        groups[(student.strip().lower(), name)].append((student.strip(), path, file_id, timestamp))

    collected = 0
    for (key, name), files in sorted(groups.items()):
        spellings = sorted({f[0] for f in files})
        student = spellings[0]
        if len(spellings) > 1:
            problems.append(f"duplicate student {' / '.join(spellings)} for {name}: kept the newest files as {student!r}")
        chosen = {}  # file name -> newest (time, path)
        for _, path, file_id, timestamp in files:
            when = timestamp or datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
            if file_id in chosen:
                problems.append(f"duplicate file {file_id} from {student} for {name}: kept the newest")
            if file_id not in chosen or when >= chosen[file_id][0]:
                chosen[file_id] = (when, path, timestamp)
        expected = expected_notebooks(cd, name)
        notebooks = [f for f in chosen if f.endswith(".ipynb")]
        for file_id in notebooks:
            if expected and file_id not in expected:
                missing = [e for e in expected if e not in chosen]
                if len(notebooks) == 1 and len(expected) == 1 and missing:
                    chosen[missing[0]] = chosen.pop(file_id)
                    problems.append(f"misnamed notebook {student}/{name}/{file_id}: renamed to {missing[0]}")
                else:
                    chosen.pop(file_id)
                    problems.append(f"misnamed notebook {student}/{name}/{file_id}: skipped (expected {', '.join(expected)})")
        if not any(f.endswith(".ipynb") for f in chosen):
            problems.append(f"no notebook from {student} for {name}: nothing collected")
            continue
        target = Path(cd.format_path(cd.submitted_directory, student, name))
        if target.exists():
            shutil.rmtree(target)  # a new collection replaces the old one (autograde sees the change)
        for file_id, (when, path, timestamp) in chosen.items():
            Path(target, file_id).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, Path(target, file_id))
        stamps = [t for _, _, t in chosen.values() if t]
        if stamps:  # nbgrader reads the submission time from timestamp.txt
            Path(target, "timestamp.txt").write_text(max(stamps).isoformat())
        collected += 1
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    for problem in problems:
        print(f"NOTE {problem}")
    print(f"collected {collected} submission(s) into {os.path.relpath(cd.format_path(cd.submitted_directory, '.', '.'))}/")
    return problems
