"""Print the README's table of variants from the registry, or write it into README.md.

    .venv/bin/python scripts/variants_table.py            # print it
    .venv/bin/python scripts/variants_table.py --write    # replace the table in README.md

The table sits under "## The variants", after its introduction; tests/test_cli.py checks that
every registered variant is in it with its framework and kind. "runs only" is what the
variant declares it runs where that is less than everything (``Variant.runs``). Nothing is
imported but the registry, which reads the declarations from the sources.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = ("| variant | framework | kind | on the ladder, built on | runs only | what |\n"
          "|---|---|---|---|---|---|")


def table() -> str:
    sys.path.insert(0, str(ROOT))
    from implementations import registry

    rows = [f"| `{v.name}` | {v.framework} | {v.kind} | "
            f"{f'`{v.below}`' if v.below else '—'} | {v.runs() or '—'} | {v.description} |"
            for v in registry.VARIANTS.values()]
    return "\n".join([HEADER, *rows])


def write(readme: Path) -> None:
    text = readme.read_text(encoding="utf-8")
    start = text.index(HEADER.splitlines()[0], text.index("## The variants"))
    end = text.index("\n\n", start)
    readme.write_text(text[:start] + table() + text[end:])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help="replace the table in README.md")
    args = p.parse_args(argv)
    if args.write:
        write(ROOT / "README.md")
    else:
        print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
