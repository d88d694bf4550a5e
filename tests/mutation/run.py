"""Mutation testing: do the tests fail when the code is wrong?

    .venv/bin/python tests/mutation/run.py [--only NAME...] [--full] [--check] [--list] [--json FILE]

Copies the working tree (the files git tracks or would track: committed, changed and new, not ignored ones) to
a temporary folder, then for each mutation in tests/mutation/mutations.py: restores the pristine files,
applies the mutation, runs its tests there (`python -m pytest -x`, with that folder first on PYTHONPATH so
every `import dlc`, in-process or in a subprocess, is the mutated copy's) and records whether they failed
(caught) or passed (survived). `--full` runs the whole default suite on each survivor. The report ends with
the score, caught / applicable mutations (the sanity mutation, which must be caught, is not counted).

The repository itself is never touched: no git command that changes anything runs, and the copy lives under
the system's temporary folder (removed at the end unless --keep). Not part of CI: it takes ~30-60 minutes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def load_mutations():
    spec = importlib.util.spec_from_file_location("dlc_mutations", HERE / "mutations.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module.MUTATIONS


@dataclass
class Outcome:
    name: str
    status: str  # caught | survived | stale | error | timeout
    seconds: float
    detail: str = ""
    full: str | None = None  # the whole suite's verdict on a survivor (--full)


def copy_tree(src: Path, dst: Path) -> None:
    """The working tree's tracked and untracked-but-not-ignored files (symlinks kept as links), read-only
    git; ../shared is linked beside the copy (tests read shared/LANGUAGE.md from there)."""
    listed = subprocess.run(["git", "-C", str(src), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], check=True, capture_output=True).stdout
    for rel in sorted(set(listed.decode().split("\0")) - {""}):
        s, d = src / rel, dst / rel
        if not s.is_symlink() and not s.exists():
            continue  # deleted in the working tree
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_symlink():
            os.symlink(os.readlink(s), d)
        else:
            shutil.copy2(s, d)
    shared = src.parent / "shared"
    if shared.is_dir() and not (dst.parent / "shared").exists():
        os.symlink(shared, dst.parent / "shared")


def apply(copy: Path, mutation, pristine: dict[str, str]) -> str | None:
    """Apply the mutation's edits in the copy (keeping each file's pristine text in `pristine`); the reason
    when one cannot be applied (stale text)."""
    for file, old, new in mutation.edits:
        path = copy / file
        pristine.setdefault(file, path.read_text())
        text = path.read_text()
        n = text.count(old)
        if n != 1:
            return f"{file}: old text found {n} times: {old.splitlines()[0].strip()!r}"
        path.write_text(text.replace(old, new))
    return None


def restore(copy: Path, pristine: dict[str, str]) -> None:
    for file, text in pristine.items():
        (copy / file).write_text(text)


def pytest_cmd(tests: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", *tests]


def run_tests(copy: Path, tests: list[str], timeout: float, skip: list[str] = ()) -> tuple[str, str]:
    """('passed' | 'failed' | 'error' | 'timeout', the last lines of the output)."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg",
               TF_CPP_MIN_LOG_LEVEL="2")
    try:
        cmd = pytest_cmd(tests + [f"--deselect={t}" for t in skip])
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return "timeout", ""
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    status = {0: "passed", 1: "failed"}.get(proc.returncode, "error")
    return status, tail


def baseline(copy: Path, tests: list[str], timeout: float) -> list[str]:
    """The node ids among `tests` that fail on the unmutated copy (deselected in every mutation's run: a
    test that fails anyway cannot catch anything)."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg",
               TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "--no-header", *tests]
    proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    return sorted({line.split()[1] for line in proc.stdout.splitlines()
                   if line.startswith(("FAILED ", "ERROR ")) and "::" in line})


def existing(copy: Path, tests: tuple[str, ...]) -> list[str]:
    """The mutation's tests whose file exists in the copy (test modules added later are named ahead)."""
    return [t for t in tests if (copy / t.split("::")[0]).is_file()]


def check_importing_the_copy(copy: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    where = subprocess.run([sys.executable, "-c", "import dlc.reference.semantics as s; print(s.__file__)"],
                           cwd=copy, env=env, capture_output=True, text=True, check=True).stdout.strip()
    if not Path(where).resolve().is_relative_to(copy.resolve()):
        sys.exit(f"mutation: `import dlc` finds {where}, not the copy in {copy}")


def selection(copy: Path, m, without: tuple[str, ...]) -> list[str]:
    """The mutation's tests whose file exists in the copy and is not left out (--without)."""
    return [t for t in existing(copy, m.tests) if t.split("::")[0] not in without]


def run_one(copy: Path, m, timeout: float, full: bool, skip: list[str], without: tuple[str, ...]) -> Outcome:
    t0 = time.time()
    pristine: dict[str, str] = {}
    problem = apply(copy, m, pristine)
    try:
        if problem:
            return Outcome(m.name, "stale", 0.0, problem)
        tests = selection(copy, m, without)
        status, tail = run_tests(copy, tests, timeout, skip)
        verdict = {"failed": "caught", "passed": "survived", "timeout": "caught"}.get(status, "error")
        failed = [line for line in tail.splitlines() if line.startswith(("FAILED", "ERROR"))]
        out = Outcome(m.name, verdict, time.time() - t0, tail if verdict == "error" else "\n".join(failed))
        if status == "timeout":
            out.detail = f"the tests ran past {timeout:.0f} s (counted as caught)"
        if full and verdict == "survived":
            whole, _ = run_tests(copy, [], 4 * 3600, skip)
            out.full = {"failed": "caught", "passed": "survived"}.get(whole, whole)
        return out
    finally:
        restore(copy, pristine)


def report(outcomes: list[Outcome], mutations) -> str:
    by_name = {m.name: m for m in mutations}
    lines = [f"{'mutation':42} {'result':9} {'time':>6}  what it breaks", "-" * 110]
    for o in outcomes:
        extra = f" (whole suite: {o.full})" if o.full else ""
        lines.append(f"{o.name:42} {o.status:9} {o.seconds:5.0f}s  {by_name[o.name].why}{extra}")
        if o.detail:
            lines += ["    " + d for d in o.detail.splitlines()]
    counted = [o for o in outcomes if not by_name[o.name].sanity and o.status in ("caught", "survived")]
    caught = sum(o.status == "caught" or o.full == "caught" for o in counted)
    others = {s: sum(o.status == s for o in outcomes) for s in ("stale", "error")}
    lines += ["-" * 110, f"score: {caught}/{len(counted)} caught"
              + "".join(f", {n} {s}" for s, n in others.items() if n)]
    survivors = [o.name for o in counted if o.status == "survived" and o.full != "caught"]
    if survivors:
        lines.append("survived: " + ", ".join(survivors))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="these mutations (and the sanity one)")
    ap.add_argument("--full", action="store_true", help="run the whole default suite on each survivor")
    ap.add_argument("--check", action="store_true", help="only check that every mutation still applies")
    ap.add_argument("--list", action="store_true", help="list the mutations and their tests")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds per mutation's tests (default 1200)")
    ap.add_argument("--json", type=Path, help="also write the outcomes to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy")
    ap.add_argument("--without", nargs="+", metavar="FILE",
                    help="leave these test files out (which mutations do the other tests catch?)")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the unmutated run that finds (and deselects) tests failing anyway")
    args = ap.parse_args(argv)
    mutations = load_mutations()
    if args.list:
        for m in mutations:
            print(f"{m.name}: {m.why}\n    " + "\n    ".join(m.tests))
        return 0
    if args.check:
        bad = [(m.name, _stale(m)) for m in mutations if _stale(m)]
        for name, problem in bad:
            print(f"stale: {name}: {problem}")
        print(f"{len(mutations) - len(bad)}/{len(mutations)} mutations apply")
        return 1 if bad else 0
    without = tuple(args.without or ())
    chosen = [m for m in mutations if m.sanity or not args.only or m.name in args.only]
    unknown = set(args.only or ()) - {m.name for m in mutations}
    if unknown:
        sys.exit(f"mutation: unknown mutation(s): {', '.join(sorted(unknown))}")
    tmp = Path(tempfile.mkdtemp(prefix="dlc-mutation-"))
    copy = tmp / ROOT.name
    try:
        copy_tree(ROOT, copy)
        check_importing_the_copy(copy)
        skip: list[str] = []
        if not args.no_baseline:
            union = sorted({t for m in chosen for t in selection(copy, m, without)})
            skip = baseline(copy, union, 4 * 3600)
            print(f"baseline: {len(skip)} of the chosen tests fail unmutated (deselected)"
                  + "".join(f"\n    {t}" for t in skip), flush=True)
        outcomes = []
        for m in chosen:
            out = run_one(copy, m, args.timeout, args.full, skip, without)
            outcomes.append(out)
            print(f"{out.status:9} {out.seconds:5.0f}s  {m.name}", flush=True)
            if m.sanity and out.status != "caught":
                print(report(outcomes, mutations))
                sys.exit("mutation: the sanity mutation survived: the tests do not see the mutated copy")
        print("\n" + report(outcomes, mutations))
        if args.json:
            args.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=2))
    finally:
        if args.keep:
            print(f"copy kept in {copy}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _stale(m) -> str | None:
    for file, old, _ in m.edits:
        n = (ROOT / file).read_text().count(old)
        if n != 1:
            return f"{file}: old text found {n} times: {old.splitlines()[0].strip()!r}"
    return None


if __name__ == "__main__":
    sys.exit(main())
