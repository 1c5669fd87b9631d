"""A command's start-up: what every ``gen-emotion`` process pays before it does anything.

    python bench/startup.py [--repeats 10]

Each repeat starts fresh Python processes that build the command-line parser (every command's module, as
``gen-emotion --help`` does) and exit, side by side in one run:

- ``parser``: the parser alone, as shipped (scikit-learn, PyTorch, transformers and vLLM load where they are used);
- ``parser + scikit-learn``: the same after ``import sklearn.metrics`` (which brings SciPy and pandas), the start-up
  every command had while ``scoring.metrics`` imported it at the top;
- ``python``: an empty interpreter, the floor.

It prints the median and the slowest wall time of each, the ratio of the first two, and one JSON line. Run it alone:
on 2 cores a second busy process doubles these figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARSER = "from gen_emotion.cli.parser import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
CASES = {
    "parser": PARSER,
    "parser + scikit-learn": "import sklearn.metrics\n" + PARSER,
    "python": "pass\n",
}


def wall(code: str) -> float:
    """Seconds for one fresh interpreter to run ``code`` and exit."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    for code in CASES.values():  # the files in the page cache before anything is timed
        wall(code)
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.repeats):  # interleaved, so a slow moment of the machine falls on every case alike
        for name, code in CASES.items():
            times[name].append(wall(code))
    figures = {
        name: {"median_s": round(statistics.median(t), 3), "max_s": round(max(t), 3)} for name, t in times.items()
    }
    for name, f in figures.items():
        print(f"{name:<22} median {f['median_s']:.3f} s, slowest {f['max_s']:.3f} s ({args.repeats} starts)")
    ratio = figures["parser + scikit-learn"]["median_s"] / figures["parser"]["median_s"]
    print(f"importing scikit-learn at start-up made each command start {ratio:.1f}x slower")
    print(json.dumps({"repeats": args.repeats, "figures": figures, "ratio": round(ratio, 2)}))


if __name__ == "__main__":
    main()
