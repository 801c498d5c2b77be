"""The README's examples work as written.

Every ```python block runs, in a folder holding the files it names: ``DMDNet.pth`` (a small generated
DMDNet in the ``generator.pth`` layout, which ``load_generator`` reads like the official file),
``refs_of_person/`` and ``lq/`` (the DMDNet fixture's faces, and one unaligned photo), and
``data/celebref/`` (a small dataset of the fixture's faces). Every command line of a ```bash / ```sh /
```console block that runs ``python -m <module>`` must name a module whose ``--help`` exits 0 and lists
each ``--flag`` of the example; where the module exposes its argparse parser (``_parser()``), a complete
example (no ``…``) must also parse.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from celebref.images import read_image, write_png
from dmdnet.network import DMDNet, DMDNetConfig
from dmdnet.trained import save_generator
from tests.paths import DMDNET_FIXTURE

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
PYTHONS = {"python", "python3", ".venv/bin/python", ".venv/bin/python3", "torchrun"}


def code_blocks(text: str, languages: set[str]) -> list[tuple[int, str]]:
    """``(first line number, code)`` of each fenced block whose language is in ``languages``."""
    blocks, current, start, inside = [], [], 0, False
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"^\s*```\s*([\w+-]*)\s*$", line)
        if fence and not inside:
            inside, language, current, start = True, fence.group(1).lower(), [], number + 1
        elif fence and inside:
            inside = False
            if language in languages:
                blocks.append((start, "\n".join(current) + "\n"))
        elif inside:
            current.append(line)
    return blocks


def cli_examples(text: str) -> list[tuple[int, str, list[str]]]:
    """``(line number, module, arguments)`` of every ``python -m <module> …`` command of the shell blocks."""
    examples = []
    for start, code in code_blocks(text, SHELL_LANGUAGES):
        lines = code.splitlines()
        i = 0
        while i < len(lines):
            number, command = start + i, lines[i]
            while command.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command.rstrip()[:-1] + " " + lines[i]
            i += 1
            command = re.sub(r"^\s*\$\s+", "", command)  # a console prompt
            tokens = shlex.split(command, comments=True)
            if not tokens or tokens[0] not in PYTHONS or "-m" not in tokens:
                continue
            at = tokens.index("-m")
            examples.append((number, tokens[at + 1], tokens[at + 2 :]))
    return examples


TEXT = README.read_text(encoding="utf-8")
PYTHON_BLOCKS = code_blocks(TEXT, {"python"})
EXAMPLES = cli_examples(TEXT)
MODULES = sorted({module for _, module, _ in EXAMPLES})


def test_the_readme_has_examples_to_check() -> None:
    assert len(PYTHON_BLOCKS) >= 2
    assert {"dmdnet.train", "dmdnet.restore"} <= set(MODULES), MODULES
    assert code_blocks(
        "```python\nx = 1\n```\n```bash\npython -m a --b \\\n  --c  # d\n```\n", {"python"}
    ) == [(2, "x = 1\n")]
    assert cli_examples("```bash\npython -m a --b 1 \\\n    --c 2  # no --d\n$ python -m e …\n```\n") == [
        (2, "a", ["--b", "1", "--c", "2"]),
        (4, "e", ["…"]),
    ]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with every file the Python blocks name."""
    root = tmp_path_factory.mktemp("readme")
    torch.manual_seed(0)
    save_generator(DMDNet(config=DMDNetConfig(channels=16, items=4)), root / "DMDNet.pth")
    shutil.copytree(
        DMDNET_FIXTURE / "refs", root / "refs_of_person", ignore=shutil.ignore_patterns("*.txt", "*.npy")
    )
    write_png(root / "lq" / "a_lq.png", read_image(DMDNET_FIXTURE / "lq.png"))
    photo = np.full((640, 700, 3), 128, np.uint8)
    photo[80:592, 150:662] = read_image(DMDNET_FIXTURE / "hq.png")  # not aligned: aligned, then pasted back
    write_png(root / "lq" / "b_photo.png", photo)
    faces = [(DMDNET_FIXTURE / "hq.png", DMDNET_FIXTURE / "hq_landmarks.txt")] + [
        (DMDNET_FIXTURE / "refs" / f"ref_{k}.png", DMDNET_FIXTURE / "refs" / f"ref_{k}_landmarks.txt")
        for k in range(3)
    ]
    places = [("train", "ann", 0), ("train", "ann", 1), ("test", "bob", 0), ("test", "bob", 1)]
    for (split, identity, n), (png, landmarks) in zip(places, faces, strict=True):
        folder = root / "data" / "celebref" / split / identity
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, folder / f"{n}.png")
        shutil.copy(landmarks, folder / f"{n}.landmarks.txt")
    return root


@pytest.mark.parametrize(
    ("line", "code"), PYTHON_BLOCKS, ids=[f"README.md:{line}" for line, _ in PYTHON_BLOCKS]
)
def test_python_block_runs_as_written(
    line: int, code: str, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workspace)
    torch.set_num_threads(2)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    exec(compile(code, f"README.md:{line}", "exec"), namespace)  # noqa: S102 - the README's own example
    if 'Path("restored")' in code:  # the restore example wrote every input, pasted back into its photo
        for name in ("a_lq.png", "b_photo.png"):
            assert (
                read_image(workspace / "restored" / name).shape == read_image(workspace / "lq" / name).shape
            )
        assert (workspace / "person.dict.pt").is_file()


def _parser(module: str) -> argparse.ArgumentParser | None:
    """The module's argparse parser where it exposes one (``_parser()``); ``None`` otherwise."""
    imported = importlib.import_module(module)
    if hasattr(imported, "__path__"):  # a package: ``python -m`` runs its __main__
        imported = importlib.import_module(f"{module}.__main__")
    make = getattr(imported, "_parser", None)
    parser = make() if callable(make) else None
    return parser if isinstance(parser, argparse.ArgumentParser) else None


@pytest.mark.parametrize("module", MODULES)
def test_cli_examples_use_known_flags(module: str, capsys: pytest.CaptureFixture) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"python -m {module} --help exits {done.returncode}: {done.stderr[-2000:]}"
    assert "usage:" in done.stdout, done.stdout[:500]
    parser = _parser(module)
    for line, name, args in EXAMPLES:
        if name != module:
            continue
        flags = {a.split("=", 1)[0] for a in args if a.startswith("--")}
        unknown = [
            f for f in sorted(flags) if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", done.stdout)
        ]
        assert not unknown, f"README.md:{line}: python -m {module} has no {unknown}"
        if parser is not None and "…" not in args and "..." not in args:
            try:
                parser.parse_args(args)
            except SystemExit:
                pytest.fail(
                    f"README.md:{line}: python -m {module} {shlex.join(args)}: {capsys.readouterr().err}"
                )
