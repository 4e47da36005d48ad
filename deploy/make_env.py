"""Write a compose ``.env``: .env.example's values, every empty secret filled with a random one.

``python deploy/make_env.py [OUT] [--set KEY=VALUE ...]``; refuses to overwrite an existing file. Secrets
are the keys ending in _PASSWORD or _SECRET_KEY; they are URL-safe (letters, digits, '-', '_'), as the
Redis and PostgreSQL URLs need. The file is written readable by its owner only.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET_SUFFIXES = ("_PASSWORD", "_SECRET_KEY")


def is_secret(key: str) -> bool:
    """Whether a variable of .env.example holds a secret."""
    return key.endswith(SECRET_SUFFIXES)


def render(example: str, overrides: dict[str, str]) -> str:
    """The .env text: example lines kept, empty secrets filled, overrides applied."""
    lines = []
    for line in example.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            key = key.strip()
            if key in overrides:
                value = overrides.pop(key)
            elif is_secret(key) and not value.strip():
                value = secrets.token_urlsafe(24)
            line = f"{key}={value}"
        lines.append(line)
    lines.extend(f"{key}={value}" for key, value in overrides.items())
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(ROOT / ".env"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists():
        print(f"{out} exists: not overwritten (delete it first to make new secrets)", file=sys.stderr)
        return 1
    overrides = dict(item.split("=", 1) for item in args.set)
    text = render((ROOT / ".env.example").read_text(), overrides)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    print(f"wrote {out} with new random secrets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
