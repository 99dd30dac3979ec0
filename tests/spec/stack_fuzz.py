"""Hostile stack files for the CLI: the real ``stacks/*.yaml`` mutated (values, keys, types, deletions, byte
garbage), run through the verbs that read a stack without a lab, in-process (typer's CliRunner).

One implementation for both uses: ``tests/spec/test_cli_fuzz.py`` draws the mutations with hypothesis (bounded,
part of the suite); run this module for a bigger one-off fuzz that counts crashes instead of stopping at the first:

    .venv/bin/python tests/spec/stack_fuzz.py --cases 3000 [--seed 1]

A case "crashes" when the verb ends in an exception that is not an exit (a traceback), exits with a code other
than 0/1/2, or exits 1 without a message.
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
STACKS = sorted((ROOT / "stacks").glob("Pulumi.*.yaml"))

HUGE = int("9" * 4299)  # the most digits Python turns into text by default; 5000 in YAML text is another case
VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**64,
    -(2**63),
    HUGE,
    1.5,
    float("inf"),
    float("nan"),
    1e308,
    "",
    " ",
    "x" * 5000,
    "[/]",
    "[bold red]x[/]",
    "[link=file:///etc/passwd]x[/link]",
    "\\",
    "[",
    "]",
    "a]b[c",
    "\x07bell",
    "nul\x00",
    "tab\there",
    "line\nbreak",
    "\x1b[31mred",
    "\u202eevil",
    "ünï©ødé",
    "😀",
    "latest",
    "550.90.05",
    "0000:3b:00.0",
    "A100-80GB-PCIe",
    "mig",
    "vgpu",
    "grid_a100d-3-40c",
    "{{x}}",
    "%s%n",
    "../../etc/passwd",
    "/dev/zero",
    "~",
    "-",
    "--json",
    "v1",
    "v2",
    [],
    [None],
    [[]],
    {},
    {"": None},
    {"a": 1},
    [{"name": "[/]"}],
    {"config": None},
]
HOSTILE_TEXT = [v for v in VALUES if isinstance(v, str) and v] + ["x" * 70, "[/]" * 3, "[red]", ":fire:", "a.b[0]"]
TEXT_GARBAGE: list[bytes] = [
    b"\xff\xfe",
    b"\x80",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\x00",
    b"\t",
    b":",
    b": :",
    b"- ",
    b"{",
    b"}",
    b"[",
    b"]",
    b"&a",
    b"*a",
    b"*undefined",
    b"!!python/object:os.system",
    b"!!binary xx",
    b"? ",
    b"|",
    b">",
    b"'",
    b'"',
    b"%YAML 9.9\n",
    b"---\n",
    b"...\n",
    b"\n  bad: indent\n",
    b"9" * 5000,
    b"\xef\xbb\xbf",
    b"\r",
    b"\x1b[31m",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
]


def _load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def _dump(document: Any) -> bytes:
    out = io.StringIO()
    yaml = YAML(typ="safe")
    yaml.width = 4096
    yaml.dump(document, out)
    return out.getvalue().encode("utf-8", "surrogatepass")


def _places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into the document (mapping keys and list indices)."""
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _places(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _places(v, (*path, i))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


def _typo(rng: random.Random, word: str) -> str:
    if not word:
        return "x"
    i = rng.randrange(len(word))
    return rng.choice(
        [
            word[:i] + word[i + 1 :],
            word[:i] + word[i].swapcase() + word[i + 1 :],
            word[:i] + rng.choice("abcxyz_-") + word[i:],
            word + "s",
            word.upper(),
        ]
    )


def mutate_document(rng: random.Random, document: Any, count: int) -> Any:
    """``count`` structural mutations: replace a value, rename / delete / add a key, duplicate or drop a list item."""
    document = copy.deepcopy(document)
    for _ in range(count):
        places = [p for p in _places(document) if p]
        if not places:
            return rng.choice(VALUES)
        path = rng.choice(places)
        parent, last = _get(document, path[:-1]), path[-1]
        kind = rng.randrange(8)
        if kind >= 6 and isinstance(parent[last], str):  # a string leaf (a name, a reference) made hostile
            parent[last] = rng.choice(HOSTILE_TEXT) if kind == 6 else parent[last] + rng.choice(HOSTILE_TEXT)
        elif kind == 0:  # replace the value
            parent[last] = copy.deepcopy(rng.choice(VALUES))
        elif kind == 1 and isinstance(parent, dict):  # rename the key (a typo)
            parent[_typo(rng, str(last))] = parent.pop(last)
        elif kind == 2:  # delete it
            del parent[last]
        elif kind == 3 and isinstance(parent, list):  # duplicate a list item (duplicate names)
            parent.insert(last, copy.deepcopy(parent[last]))
        elif kind == 4 and isinstance(parent, dict):  # an extra key
            parent[rng.choice(["extra", "name", "Name", "memoryMB", "p2P", "vgpus", "[/]", "\x07"])] = rng.choice(
                VALUES[:12]
            )
        else:  # change the type: scalar into a list or a mapping, a container into a scalar
            value = parent[last]
            parent[last] = (
                rng.choice([[value], {"value": value}]) if not isinstance(value, (dict, list)) else rng.choice(VALUES)
            )
    return document


def mutate_bytes(rng: random.Random, data: bytes, count: int) -> bytes:
    """``count`` byte-level mutations: garbage inserted, a slice dropped, truncation, a line doubled."""
    for _ in range(count):
        at = rng.randrange(len(data) + 1)
        kind = rng.randrange(5)
        numbers = [m.start(1) for m in re.finditer(rb": (\d+)\n", data)]
        if kind == 4 and numbers:  # a number of thousands of digits where a number belongs
            start = rng.choice(numbers)
            end = data.index(b"\n", start)
            data = data[:start] + b"9" * rng.choice([400, 4300, 5000]) + data[end:]
            continue
        if kind == 0:
            data = data[:at] + rng.choice(TEXT_GARBAGE) + data[at:]
        elif kind == 1:
            data = data[:at] + data[at + rng.randrange(1, 40) :]
        elif kind == 2:
            data = data[:at]
        else:
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            end = len(data) if end < 0 else end + 1
            data = data[:end] + data[start:end] + data[end:]
    return data


def make_stack(rng: random.Random) -> bytes:
    """One hostile stack file, from a real stack: mostly structural mutations, sometimes byte garbage on top."""
    document = _load(rng.choice(STACKS))
    mode = rng.randrange(10)
    if mode < 7:
        return _dump(mutate_document(rng, document, rng.randint(1, 4)))
    data = _dump(document) if mode < 9 else _dump(mutate_document(rng, document, 1))
    return mutate_bytes(rng, data, rng.randint(1, 3))


# The verbs that read a stack and, without a lab, answer from the stack alone (the lab dir is pointed at nothing).
VERBS: list[list[str]] = [
    ["validate"],
    ["validate", "--json"],
    ["plan"],
    ["plan", "--json"],
    ["hosts", "prepare", "--dry-run"],
    ["hosts", "prepare", "--dry-run", "--json"],
    ["vms", "apply", "--dry-run"],
    ["license", "apply", "--dry-run"],
    ["audit", "--json"],
    ["verify", "--json"],
]


@dataclass
class Outcome:
    verb: list[str]
    exit_code: int | None
    output: str
    crash: str | None  # why this case counts as a crash (None: a clean answer)


_runner = CliRunner()


def run_verb(verb: list[str], stack: Path) -> Outcome:
    from gpufleet.cli.main import app

    result = _runner.invoke(app, [*verb, str(stack)])
    output = result.stdout + (result.stderr or "")
    crash = None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        crash = f"{type(result.exception).__name__}: {str(result.exception)[:200]}"
    elif "Traceback (most recent call last)" in output:
        crash = "a traceback in the output"
    elif result.exit_code not in (0, 1, 2):
        crash = f"exit code {result.exit_code}"
    elif result.exit_code == 1 and not output.strip():
        crash = "exit 1 without a message"
    elif "--json" in verb and (result.stdout.strip() or verb[0] in ("validate", "plan")):
        # validate and plan always answer in JSON; other verbs print bad input on stderr, stdout left empty
        try:
            json.loads(result.stdout)
        except ValueError:
            crash = "--json printed something that is not one JSON document"
    return Outcome(verb, result.exit_code, output, crash)


def no_lab_environment(lab_dir: Path) -> dict[str, str]:
    """The environment the fuzz runs in: no lab to find, no secret variable set."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith("GPUFLEET_")}
    return keep | {"GPUFLEET_LAB_DIR": str(lab_dir), "COLUMNS": "120"}


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mig-fit", type=int, default=400, help="random `mig fit` calls")
    parser.add_argument("--keep", type=Path, help="write the first stack of each kind of crash into this directory")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    crashes: Counter[str] = Counter()
    examples: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="gpufleet-fuzz-") as tmp:
        os.environ.clear()
        os.environ.update(no_lab_environment(Path(tmp) / "no-lab"))
        stack = Path(tmp) / "Pulumi.fuzz.yaml"
        for case in range(args.cases):
            stack.write_bytes(make_stack(rng))
            outcome = run_verb(rng.choice(VERBS), stack)
            if outcome.crash:
                key = f"{' '.join(outcome.verb)}: {outcome.crash[:80]}"
                crashes[key] += 1
                if args.keep and key not in examples:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    examples[key] = str(args.keep / f"crash-{case}.yaml")
                    Path(examples[key]).write_bytes(stack.read_bytes())
        fits = 0
        for _ in range(args.mig_fit):
            outcome = run_mig_fit(rng)
            if outcome.crash:
                fits += 1
                crashes[f"mig fit: {outcome.crash[:80]}"] += 1
    total = sum(crashes.values())
    print(f"{args.cases} stack cases, {args.mig_fit} mig fit calls: {total} crashes ({fits} in mig fit)")
    for key, n in crashes.most_common():
        print(f"  {n:5d}  {key}" + (f"  (example {examples[key]})" if key in examples else ""))
    return 1 if total else 0


MIG_WORDS = [
    "1g.10gb",
    "1g.20gb",
    "2g.20gb",
    "3g.40gb",
    "4g.40gb",
    "7g.80gb",
    "1g.10gb+me",
    "1g.12gb",
    "1g.24gb",
    "grid_a100d-3-40c",
    "nvidia_a100d-4-40c",
    "grid_h100-3-40c",
    "nvidia_l40s-24c",
    "",
    "[/]",
    "[bold]x",
    "\x07",
    "9" * 5000,
    "-1",
    "0g.0gb",
    "99g.99gb",
    "--json",
    "-",
    "1g.10gb" * 200,
]
MIG_GPUS = ["A100-80GB", "A100-80GB-PCIe", "H100-80GB", "A30", "L40S", "T4", "", "[/]", "a100-80gb", "\x00", "9" * 5000]


def mig_fit_args(rng: random.Random) -> list[str]:
    profiles = [rng.choice(MIG_WORDS) for _ in range(rng.randint(0, 9))]
    args = ["mig", "fit", "--gpu", rng.choice(MIG_GPUS), *profiles]
    if rng.random() < 0.4:
        args.append("--json")
    return args


def run_mig_fit(rng: random.Random) -> Outcome:
    from gpufleet.cli.main import app

    args = mig_fit_args(rng)
    result = _runner.invoke(app, args)
    output = result.stdout + (result.stderr or "")
    crash = None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        crash = f"{type(result.exception).__name__}: {str(result.exception)[:200]}"
    elif result.exit_code not in (0, 1, 2):
        crash = f"exit code {result.exit_code}"
    elif result.exit_code == 1 and not output.strip():
        crash = "exit 1 without a message"
    return Outcome(args, result.exit_code, output, crash)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
