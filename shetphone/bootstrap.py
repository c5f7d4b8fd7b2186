"""``python -m shetphone.bootstrap``: create any missing local files from the examples.

Run by ``make run`` on a fresh machine. The generated files fit together:
``admin`` gets a random password (printed once, never a fixed default) and is a
client of the example numbers.
"""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path

from .users import set_password

ROOT = Path(__file__).resolve().parent.parent


def create_missing(root: Path, port: int) -> list[str]:
    """Create what is missing; return what was said to the person running it."""
    said: list[str] = []
    ini = root / "shetphone.ini"
    if not ini.exists():
        text = (root / "shetphone.ini.example").read_text(encoding="utf-8")
        # Until the team has a public HTTPS address, the page is served locally.
        text = text.replace(
            "public_url = https://phone.example.org",
            f"public_url = http://127.0.0.1:{port}\n; change to the https:// address Twilio reaches",
        )
        ini.write_text(text, encoding="utf-8")
        said.append(f"Created {ini.name} from the example: set public_url and your numbers in it.")
    presets = root / "presets.csv"
    if not presets.exists():
        presets.write_text((root / "presets.csv.example").read_text(encoding="utf-8"), encoding="utf-8")
        said.append(f"Created {presets.name} from the example.")
    htpasswd = root / ".htpasswd"
    if not htpasswd.exists():
        password = secrets.token_urlsafe(12)
        set_password(htpasswd, "admin", password)
        htpasswd.chmod(0o600)
        said.append(f"Created .htpasswd with the user admin, password: {password}")
        said.append("This password is shown once; change it with `flask --app app users add admin`.")
    return said


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    for line in create_missing(ROOT, args.port):
        print(line)


if __name__ == "__main__":
    main()
