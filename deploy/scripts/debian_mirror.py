"""Print the Debian mirror URI this machine's apt uses for a suite (default: bookworm).

Reads /etc/apt/sources.list.d/*.sources (deb822) and the one-line *.list / sources.list
formats, so that no package host's name is ever written into the repository.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

APT = Path("/etc/apt")


def _deb822(text: str) -> list[tuple[str, list[str], list[str]]]:
    entries = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" in fields.get("types", "").split():
            entries += [
                (uri, fields.get("suites", "").split(), [])
                for uri in fields.get("uris", "").split()
            ]
    return entries


def _one_line(text: str) -> list[tuple[str, list[str], list[str]]]:
    entries = []
    for line in text.splitlines():
        words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            entries.append((words[1], [words[2]], words[3:]))
    return entries


def mirror(suite: str) -> str:
    entries = []
    for path in sorted(APT.glob("sources.list.d/*.sources")):
        entries += _deb822(path.read_text(encoding="utf-8", errors="replace"))
    for path in [APT / "sources.list", *sorted(APT.glob("sources.list.d/*.list"))]:
        if path.is_file():
            entries += _one_line(path.read_text(encoding="utf-8", errors="replace"))
    for uri, suites, _components in entries:
        if suite in suites and uri.startswith(("http://", "https://")):
            return uri.rstrip("/")
    raise SystemExit(f"no 'deb' source for suite {suite!r} in {APT}/sources.list(.d)")


if __name__ == "__main__":
    print(mirror(sys.argv[1] if len(sys.argv) > 1 else "bookworm"))
