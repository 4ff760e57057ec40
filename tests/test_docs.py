"""The docs' shell examples run, in order, from a clean clone: a doctest for the CLI.

Convention for README.md and docs/*.md (every fenced block has an info string):

* ```` ```console ```` -- a terminal session: each line starting with ``$ `` is a command (a line
  ending in ``\\`` continues it; ``<<'EOF'`` takes the lines up to ``EOF``); other lines are
  output, shown to the reader, not compared -- except ``exit N`` right after a command that
  ends in ``echo "exit $?"``: the command must print that line.
* ```` ```bash ```` / ```` ```sh ```` -- every line is a command (``#`` lines are comments).
* any other tag (``text`` for output and diagrams, ``python``, ``toml``, ``yaml``) is not run.

An HTML comment on the line just before a block's fence says how the test treats it; directives
are separated by ``;``:

* ``<!-- doctest: skip (WHY) -->`` -- not run; WHY is required and the page's prose must say what
  the reader brings (a phone, a dataset, a model) or why it is not run here;
* ``<!-- doctest: slow -->`` -- run only by the ``slow``-marked test of the page (CI runs both;
  ``-m 'not slow'`` leaves it out); a block that uses what a slow block made is slow too;
* ``<!-- doctest: exit N -->`` -- every command of the block must exit N (default 0).

Each page runs in its own temporary folder, which holds links to the repository's top-level
files and folders (``recipes/``, ``tests/``, ``constraints.txt`` ... as a clone has them) and
nothing else: whatever a command needs, an earlier command on the same page must have made.
``fcbench`` and ``python`` are this environment's (its bin folder is put first on ``PATH``);
the results store (``results/``), the machine-peak cache (``FCBENCH_CACHE``) and every output
land in the temporary folder. A command that exits otherwise than expected fails the test with
the page, the line and the command's stderr. Give every example that writes a run its own
``--out`` folder, so that one example changing does not break the next.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))]
RUN_TAGS = {"console", "bash", "sh"}
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*doctest:\s*(.*?)\s*-->\s*$")
DIRECTIVE = re.compile(r"^(?:skip\s*\((?P<why>[^)]+)\)|(?P<slow>slow)|exit\s+(?P<exit>\d+))$")
EXIT_ECHO = 'echo "exit $?"'
COMMAND_TIMEOUT_S = 900


@dataclass
class Command:
    line: int  # 1-based line of the page where the command starts
    text: str
    shows_exit: int | None = None  # the "exit N" line the page shows after it


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    tag: str
    body: list[str]
    skip: str | None = None
    slow: bool = False
    exit: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def runs(self) -> bool:
        return self.tag in RUN_TAGS and self.skip is None

    def commands(self) -> list[Command]:
        out: list[Command] = []
        console = self.tag == "console"
        i = 0
        while i < len(self.body):
            raw = self.body[i]
            lineno = self.line + 1 + i
            i += 1
            if console:
                if not raw.startswith("$ "):
                    m = re.fullmatch(r"exit (\d+)", raw.strip())
                    if m and out and out[-1].text.rstrip().endswith(EXIT_ECHO) and out[-1].shows_exit is None:
                        out[-1].shows_exit = int(m.group(1))
                    continue
                text = raw[2:]
            else:
                if not raw.strip() or raw.lstrip().startswith("#"):
                    continue
                text = raw
            while text.endswith("\\") and i < len(self.body):
                text += "\n" + self.body[i]
                i += 1
            heredoc = re.search(r"<<-?\s*'?(\w+)'?", text)
            if heredoc:
                end = heredoc.group(1)
                while i < len(self.body):
                    text += "\n" + self.body[i]
                    i += 1
                    if self.body[i - 1].strip() == end:
                        break
            out.append(Command(lineno, text))
        return out


def parse(page: str) -> list[Block]:
    lines = (REPO / page).read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, tag = m.groups()
        start = i
        body = []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence) and lines[i].strip() == fence):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        block = Block(page, start + 1, tag, body)
        prev = start - 1
        marker = MARKER.match(lines[prev]) if prev >= 0 else None
        if marker:
            for part in filter(None, (p.strip() for p in re.findall(r"(?:[^;(]|\([^)]*\))+", marker.group(1)))):
                d = DIRECTIVE.match(part)
                if not d:
                    block.errors.append(f"unknown doctest directive {part!r} (skip (WHY), slow, exit N)")
                elif d.group("why"):
                    block.skip = d.group("why").strip()
                elif d.group("slow"):
                    block.slow = True
                else:
                    block.exit = int(d.group("exit"))
        if not tag:
            block.errors.append("fenced block without an info string: tag it console/bash (run by this test) "
                                "or text/python/toml/yaml (not run)")
        elif marker and tag not in RUN_TAGS:
            block.errors.append(f"doctest marker on a '{tag}' block, which is never run")
        blocks.append(block)
    return blocks


def _clone(tmp: Path) -> None:
    """Link the repository's top-level entries into ``tmp``, as a fresh clone would have them."""
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    names = ({p.split("/", 1)[0] for p in listed.stdout.splitlines()} if listed.returncode == 0 and listed.stdout
             else {p.name for p in REPO.iterdir() if not p.name.startswith(".") or p.name == ".ci"})
    for name in sorted(names):
        if (REPO / name).exists() and not (tmp / name).exists():
            (tmp / name).symlink_to(REPO / name)


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FCBENCH_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["FCBENCH_CACHE"] = str(tmp / ".cache" / "fcbench")
    env.setdefault("COLUMNS", "200")
    env.pop("PYTHONPATH", None)
    return env


def run_page(page: str, tmp: Path, *, slow: bool) -> int:
    """Run the page's blocks in order (slow ones too when ``slow``); return how many commands ran."""
    _clone(tmp)
    env = _env(tmp)
    ran = 0
    for block in parse(page):
        if not block.runs or (block.slow and not slow):
            continue
        for cmd in block.commands():
            proc = subprocess.run(["bash", "-c", cmd.text], cwd=tmp, env=env, capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT_S)
            ran += 1
            where = f"{page}:{cmd.line}: $ {cmd.text}"
            if proc.returncode != block.exit:
                pytest.fail(f"{where}\nexited {proc.returncode}, expected {block.exit}\n"
                            f"--- stderr (end) ---\n{proc.stderr[-4000:]}\n--- stdout (end) ---\n{proc.stdout[-1500:]}",
                            pytrace=False)
            if cmd.shows_exit is not None and f"exit {cmd.shows_exit}" not in proc.stdout.splitlines():
                pytest.fail(f"{where}\nthe page shows 'exit {cmd.shows_exit}'; it printed:\n{proc.stdout[-1500:]}\n"
                            f"--- stderr (end) ---\n{proc.stderr[-3000:]}", pytrace=False)
    return ran


def _pages_with(pred) -> list[str]:
    return [p for p in PAGES if any(pred(b) for b in parse(p))]


def test_every_block_is_tagged_and_marked_correctly():
    errors = [f"{b.page}:{b.line}: {e}" for p in PAGES for b in parse(p) for e in b.errors]
    assert not errors, "\n".join(errors)


def test_docs_stay_inside_the_repository():
    """No link or path that leaves the repository; every relative link points at a file of it."""
    problems = []
    for page in PAGES:
        text = (REPO / page).read_text(encoding="utf-8")
        for n, line in enumerate(text.splitlines(), 1):
            if "../shared" in line or re.search(r"(?<![\w.-])shared/", line):
                problems.append(f"{page}:{n}: mentions a folder outside the repository: {line.strip()}")
        for m in re.finditer(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", text):
            target = m.group(1)
            if re.match(r"[a-z]+:", target):
                continue
            resolved = ((REPO / page).parent / target).resolve()
            line = text.count("\n", 0, m.start()) + 1
            if not resolved.is_relative_to(REPO):
                problems.append(f"{page}:{line}: link {target} leaves the repository")
            elif not resolved.exists():
                problems.append(f"{page}:{line}: link {target} points at nothing")
    assert not problems, "\n".join(problems)


def test_parser_reads_sessions_continuations_heredocs_and_exit_lines():
    block = Block("x.md", 1, "console", [
        "$ fcbench eval a.pt \\", "    --data synthetic:pairs", "output line",
        "$ cat > bad.yaml <<'EOF'", "name: bad", "EOF",
        '$ fcbench run bad.yaml; echo "exit $?"', "fcbench: error: ...", "exit 2",
    ])
    cmds = block.commands()
    assert [c.text.split()[0] for c in cmds] == ["fcbench", "cat", "fcbench"]
    assert cmds[0].text == "fcbench eval a.pt \\\n    --data synthetic:pairs" and cmds[0].line == 2
    assert cmds[1].text.endswith("name: bad\nEOF")
    assert [c.shows_exit for c in cmds] == [None, None, 2]


@pytest.mark.parametrize("page", _pages_with(lambda b: b.runs and not b.slow))
def test_docs_examples_run(page, tmp_path):
    """The page's cheap examples, in order, from a clean clone. A session that also selects the page's slow
    test deselects this one (tests/conftest.py): the slow one runs these same commands, and the slow ones
    between them."""
    assert run_page(page, tmp_path, slow=False) > 0


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages_with(lambda b: b.runs and b.slow))
def test_docs_examples_run_with_slow_ones(page, tmp_path):
    """The page's examples including the slow ones (full conversions, bench matrices), in order."""
    assert run_page(page, tmp_path, slow=True) > 0
