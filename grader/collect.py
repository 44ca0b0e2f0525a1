"""`python -m grader collect SOURCE`: bring submissions into the course's submitted/ folder.

SOURCE is either
- a folder laid out `<student>/<assignment>/*.ipynb` (what `nbgrader collect` or a shared drive gives), or
- an LMS download (a zip, possibly of zips), named as nbgrader's `zip_collect` expects: every file
  name says whose it is, matched by `FileNameCollectorPlugin.named_regexp` (from the course's
  nbgrader_config.py, or --regexp), default `<student>_<notebook>.ipynb`. Pass --assignment.

An LMS archive is read entry by entry with zipfile; each file name is matched with the regular
expression the way nbgrader's FileNameCollectorPlugin does (its named groups student_id, file_id and
optionally timestamp). Problems are reported and skipped, never fatal: a notebook with the wrong
name is renamed when that is unambiguous (one notebook submitted, one expected), empty folders are
listed, and of a file uploaded twice the newest is kept.

Identity comes from the outer structure only (the folder name, or the LMS archive's entry): a file
inside a student's own upload can never name another student. Ids that collide once case, spaces
and Unicode are ignored (`Alice/` and `alice/`) are refused, both, with a report naming them; ids
that are not a plain name (`..`, a path) are refused. Links, special and oversize files are refused,
never followed; an archive entry that leaves the archive costs that entry only. The temporary folder
is always removed.
"""

import os
import shutil
import sys
import tempfile
import unicodedata
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from grader import DEFAULT_REGEXP, GraderError
from grader.course import MAX_FILE, course_directory, files_under


def expected_notebooks(cd, assignment):
    """Notebook names the assignment expects: from the student version, else from the source."""
    for folder in (cd.release_directory, cd.source_directory):
        names = sorted(p.name for p in Path(cd.format_path(folder, ".", assignment)).glob("*.ipynb"))
        if names:
            return names
    return []


def from_folder(folder):
    """[(student, assignment, file path, name in the submission, timestamp or None)] and problems.

    The student is the outer folder's name. Links and special files are refused, never followed."""
    entries, problems = [], []
    for student in sorted(p for p in Path(folder).iterdir() if not p.name.startswith(".")):
        if student.is_symlink() or not student.is_dir():
            problems.append(f"skipped {student}: not a folder <student>/ (links are never followed)")
            continue
        assignments = [p for p in sorted(student.iterdir()) if not p.name.startswith(".")]
        if not assignments:
            problems.append(f"empty folder: {student} (no <assignment>/ folder inside)")
        for assignment in assignments:
            if assignment.is_symlink() or not assignment.is_dir():
                problems.append(f"skipped {assignment}: not a folder <assignment>/ (links are never followed)")
                continue
            refused = []
            files = [name for name in files_under(assignment, refused) if ".ipynb_checkpoints" not in Path(name).parts]
            problems += [f"skipped {assignment / why}" for why in refused]
            if not files and not refused:
                problems.append(f"empty folder: {assignment}")
            for name in files:
                entries.append((student.name, assignment.name, assignment / name, name, None))
    return entries, problems


MAX_DEPTH = 3  # an LMS zip holds each student's upload, which may be a zip of zips: no deeper


def from_zip(archive, assignment, regexp, plugin=None):
    """The same, from an LMS zip. Each top-level entry's name says whose it is (matched by `regexp`, as
    nbgrader's FileNameCollectorPlugin does, or by the collector `plugin`, see collector_plugin); the files
    inside a student's own uploaded zip are that student's, whatever their names say. Unsafe entries (paths
    leaving the archive, links, oversize files, broken zips) cost only that entry or that student's upload,
    with the reason. Extracts into a temporary folder, returned for the caller to remove."""
    import io
    import re
    import stat
    import zipfile

    from nbgrader.utils import parse_utc

    scratch = tempfile.mkdtemp(prefix="grader-collect-")
    entries, problems = [], []
    extracted = iter(range(10**9))

    def whose(name):
        """The regexp's groups for a file name (student_id, file_id, maybe timestamp), or None."""
        found = re.match(regexp, "/" + name)
        groups = found.groupdict() if found else {}
        return groups if groups.get("student_id") and groups.get("file_id") else None

    def extract(zip_file, info, name):
        """The entry written to a file of its own name (in a folder of its own), for the plugin to look at."""
        path = Path(scratch, str(next(extracted)), *[p for p in name.split("/") if p])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(zip_file.read(info))
        return path

    def plugin_says(path, shown):
        """What the collector plugin's collect() says of an extracted file, as nbgrader's zip_collect reads it."""
        try:
            info = plugin.collect(str(path))
        except Exception as error:
            problems.append(f"skipped {shown}: the collector {type(plugin).__name__} failed on it "
                            f"({type(error).__name__}: {str(error)[:150]})")
            return None
        if not info:
            return None
        if not all(isinstance(info.get(key), str) and info[key] for key in ("student_id", "file_id")):
            problems.append(f"skipped {shown}: the collector {type(plugin).__name__} gave no student_id and file_id "
                            "(strings)")
            return None
        return info

    def walk(zip_file, where, owner, depth):
        for info in zip_file.infolist():
            name, shown = info.filename, where + info.filename
            if info.is_dir():
                continue
            parts = name.replace("\\", "/").split("/")
            if name.startswith("/") or "\\" in name or ".." in parts or ":" in parts[0]:
                problems.append(f"skipped {shown}: a path that leaves the archive")
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                problems.append(f"skipped {shown}: a link (never followed)")
                continue
            if info.file_size > MAX_FILE:
                problems.append(f"skipped {shown}: {info.file_size / 2**20:,.0f} MiB, over {MAX_FILE // 2**20} MiB")
                continue
            base = parts[-1]
            path = None
            if plugin is not None and not base.endswith(".zip"):  # (a student's zip: its name, by the plugin's regexp)
                path = extract(zip_file, info, name if owner is None else base)
                claimed = plugin_says(path, shown)
            else:
                claimed = whose(name if owner is None else base)
            if owner is not None and claimed and student_key(claimed["student_id"]) != student_key(owner):
                problems.append(f"skipped {shown}: a file inside {owner}'s upload names another student "
                                f"({claimed['student_id']}); a student's files are filed under their own name only")
                continue
            student = owner if owner is not None else (claimed or {}).get("student_id")
            if base.endswith(".zip"):
                if student is None or depth >= MAX_DEPTH:
                    problems.append(f"skipped {shown}: " + ("its name does not say whose it is" if student is None
                                                            else f"zips nested more than {MAX_DEPTH} deep"))
                    continue
                try:
                    with zipfile.ZipFile(io.BytesIO(zip_file.read(info))) as inner:
                        walk(inner, shown + "/", student, depth + 1)
                except (zipfile.BadZipFile, OSError, ValueError, RuntimeError) as error:
                    problems.append(f"skipped {shown}: not a readable zip ({type(error).__name__}: {str(error)[:100]})")
                continue
            if student is None or not base.endswith(".ipynb"):
                problems.append(f"skipped {shown}: " + ("not a notebook" if student is not None else
                                f"its name does not match the collector's regular expression {regexp!r}" if plugin is None
                                else f"the collector {type(plugin).__name__} skipped it (no match)"))
                continue
            if path is None:
                path = Path(scratch, f"{len(entries)}-{base}")
                path.write_bytes(zip_file.read(info))
            # as nbgrader's zip_collect: the file keeps its own extension, whatever the file_id says
            file_id = os.path.splitext(claimed["file_id"])[0] + os.path.splitext(base)[1] if claimed else base
            timestamp = None
            if claimed and claimed.get("timestamp"):
                try:
                    timestamp = parse_utc(claimed["timestamp"])
                except (ValueError, TypeError, OverflowError) as error:
                    problems.append(f"{shown}: its timestamp {claimed['timestamp']!r} cannot be read ({error}); "
                                    "the file's own time is used")
            entries.append((student, assignment, path, file_id, timestamp))

    try:
        with zipfile.ZipFile(archive) as top:
            walk(top, "", None, 0)
    except zipfile.BadZipFile as error:
        shutil.rmtree(scratch, ignore_errors=True)
        raise GraderError(f"{archive}: not a zip file ({error}); download the LMS archive again") from None
    return entries, problems, scratch


def student_key(raw):
    """The student id as compared: Unicode-normalised, spaces at the ends dropped, case ignored."""
    return unicodedata.normalize("NFKC", raw).strip().casefold()


def bad_id(raw):
    """Why a student id cannot be a folder name in the course (empty, `.`/`..`, a path), or None."""
    cleaned = unicodedata.normalize("NFC", raw).strip()
    if not cleaned or cleaned in (".", "..") or cleaned.startswith("."):
        return "empty, or starts with a dot"
    if any(c in cleaned for c in "/\\\0") or any(ord(c) < 32 for c in cleaned):
        return "holds a path separator or a control character"
    return None


def collector_plugin(name, cd, config, regexp=None):
    """An instance of the collector plugin class `name` ("module.Class", as `nbgrader zip_collect --collector`:
    a subclass of nbgrader's FileNameCollectorPlugin, its module importable or in the course folder), configured
    by the course's nbgrader_config.py; `regexp`, if given, is its named_regexp."""
    import importlib

    from nbgrader.plugins import FileNameCollectorPlugin

    module, _, attribute = name.rpartition(".")
    if not module:
        raise GraderError(f"--collector {name}: write it as module.Class, e.g. plugin.CustomPlugin (plugin.py in the "
                          "course folder)")
    sys.path.insert(0, cd.root)
    try:
        plugin = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as error:
        raise GraderError(f"--collector {name}: cannot import it ({type(error).__name__}: {error}); put {module}.py "
                          "in the course folder or install it") from None
    finally:
        sys.path.remove(cd.root)
    if not (isinstance(plugin, type) and issubclass(plugin, FileNameCollectorPlugin)):
        raise GraderError(f"--collector {name}: not a subclass of nbgrader's FileNameCollectorPlugin")
    instance = plugin(config=config)
    if regexp or not instance.named_regexp:
        instance.named_regexp = regexp or DEFAULT_REGEXP
    return instance


def collect(source, course=".", assignment=None, regexp=None, collector=None):
    """Copy submissions from `source` into submitted/; returns the list of problems (also printed).

    `collector` ("module.Class"): an nbgrader collector plugin that reads whose each file of an LMS zip is, and
    when it was submitted (as `nbgrader zip_collect --collector`); default: the regular expression."""
    cd, config = course_directory(course)
    source = Path(source)
    scratch = None
    if source.is_dir():
        if collector:
            raise GraderError("--collector reads the file names of an LMS zip; a folder says whose it is by <student>/")
        entries, problems = from_folder(source)
        if assignment:
            entries = [e for e in entries if e[1] == assignment]
    elif source.is_file() and source.suffix in (".zip", ".gz"):
        if not assignment:
            raise GraderError("collecting from an LMS zip: say which assignment it holds with --assignment NAME")
        plugin = collector_plugin(collector, cd, config, regexp) if collector else None
        regexp = (plugin.named_regexp if plugin else None) or regexp or \
            config.get("FileNameCollectorPlugin", {}).get("named_regexp") or DEFAULT_REGEXP
        entries, problems, scratch = from_zip(source, assignment, regexp, plugin)
    else:
        raise GraderError(f"{source}: not a folder of <student>/<assignment>/ nor a .zip file")

    try:
        collected = file_away(cd, entries, problems)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    for problem in problems:
        print(f"NOTE {problem}")
    print(f"collected {collected} submission(s) into {os.path.relpath(cd.format_path(cd.submitted_directory, '.', '.'))}/")
    return problems


def file_away(cd, entries, problems):
    """Copy each student's newest files into submitted/<student>/<assignment>/; returns how many submissions.

    The student id is the outer name (folder, or LMS entry), spaces at the ends dropped. Two outer names
    that are the same student once case, spaces and Unicode are ignored (`Carol/` and `carol/`) are
    refused, both, with a report naming them: filing one's work under the other's name is worse than
    asking. So are ids that cannot be a folder name (`..`, a path)."""
    sources = Path(cd.root, cd.source_directory)
    known = {p.name for p in sources.iterdir() if p.is_dir()} if sources.is_dir() else set()
    groups, spellings = defaultdict(list), defaultdict(set)
    for student, name, path, file_id, timestamp in entries:
        if name not in known:
            problems.append(f"skipped {path}: no assignment {name!r} in the course ({', '.join(sorted(known))})")
            continue
        why = bad_id(student)
        if why:
            problems.append(f"skipped {path}: the student id {student!r} {why}")
            continue
        groups[(student_key(student), name)].append((student, path, file_id, timestamp))
        spellings[student_key(student)].add(student)

    collected = 0
    for (key, name), files in sorted(groups.items()):
        if len(spellings[key]) > 1:
            names = " and ".join(repr(s) for s in sorted(spellings[key]))
            problems.append(f"refused {name} of {names}: the same student id once case, spaces and Unicode are "
                            "ignored; neither was collected. Rename one (it is two students) or merge them, and collect again")
            continue
        student = unicodedata.normalize("NFC", files[0][0]).strip()
        chosen = {}  # file name -> newest (time, path)
        for _, path, file_id, timestamp in files:
            if Path(file_id).is_absolute() or ".." in Path(file_id).parts:
                problems.append(f"skipped {file_id!r} from {student} for {name}: a file name that leaves the folder")
                continue
            # (nbgrader's timestamps are naive UTC; the file's own time is aware: compared as UTC, both)
            when = (timestamp.replace(tzinfo=timezone.utc) if timestamp
                    else datetime.fromtimestamp(path.stat().st_mtime, timezone.utc))
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
    return collected
