"""The built front end: Vite's manifest turned into script and style tags.

Vite writes hashed file names (``assets/dialer-3fa1c2.js``) and a manifest
mapping each source entry to them. Templates ask for an entry by its source
name; the files themselves are served with a year-long, immutable cache,
since a change gives them a new name.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, current_app, request, url_for
from markupsafe import Markup, escape

from ..settings import ConfigError
from ..watched import WatchedFile

log = logging.getLogger(__name__)

DIST = "dist"  # under the app's static folder
MANIFEST = Path(DIST, ".vite", "manifest.json")
ENTRIES = {"dialer": "src/main.js", "login": "src/login.js"}
IMMUTABLE = "public, max-age=31536000, immutable"
NOT_BUILT = (
    "The page’s front end has not been built yet. On the server, run “make frontend” "
    "(or “npm ci && npm run build” in frontend/), then reload this page."
)


@dataclass(frozen=True)
class EntryAssets:
    """What a template needs for one entry; ``missing`` says in words why there is nothing."""

    scripts: tuple[str, ...] = ()
    preloads: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()
    missing: str | None = None

    def __html__(self) -> str:
        return str(self.tags())

    def tags(self) -> Markup:
        lines = [f'<link rel="stylesheet" href="{escape(href)}">' for href in self.styles]
        lines += [f'<link rel="modulepreload" href="{escape(href)}">' for href in self.preloads]
        lines += [f'<script type="module" src="{escape(src)}"></script>' for src in self.scripts]
        return Markup("\n  ".join(lines))  # noqa: S704 (every URL in it is escaped above)


def parse_manifest(text: str, path: Path) -> dict[str, dict]:
    try:
        chunks = json.loads(text)
    except ValueError as error:
        raise ConfigError(path, "", f"is not valid JSON ({error})") from None
    if not isinstance(chunks, dict):
        raise ConfigError(path, "", "is not a JSON object of chunks")
    return chunks


class Manifest:
    """Vite's manifest, re-read when the file changes (a rebuild needs no restart).

    Missing means not built: the pages say so, nothing fails. Checked on every page
    (a stat), and taken at once: a manifest cut short by a rebuild is not valid JSON,
    so it is never mistaken for a whole one.
    """

    def __init__(self, path: Path):
        self.path = path

    @property
    def path(self) -> Path:
        return self._watched.path

    @path.setter
    def path(self, path: Path) -> None:
        self._watched = WatchedFile(Path(path), parse_manifest, interval=0, absent=None, settle=False)

    def chunks(self) -> dict[str, dict] | None:
        return self._watched.current

    def entry(self, source: str, url: callable) -> EntryAssets:
        chunks = self.chunks()
        if chunks is None or source not in chunks:
            return EntryAssets(missing=NOT_BUILT)
        styles: list[str] = []
        preloads: list[str] = []
        seen: set[str] = set()

        def visit(name: str, is_entry: bool) -> None:
            # Static imports load with the entry: preload them and take their CSS too.
            if name in seen or name not in chunks:
                return
            seen.add(name)
            chunk = chunks[name]
            for imported in chunk.get("imports", ()):
                visit(imported, False)
            for css in chunk.get("css", ()):
                if url(css) not in styles:
                    styles.append(url(css))
            if not is_entry and chunk["file"].endswith(".js"):
                preloads.append(url(chunk["file"]))

        visit(source, True)
        return EntryAssets(scripts=(url(chunks[source]["file"]),), preloads=tuple(preloads), styles=tuple(styles))


def init_app(app: Flask) -> None:
    manifest = Manifest(Path(app.static_folder or "static") / MANIFEST)
    app.extensions["shetphone_assets"] = manifest

    def static_url(file: str) -> str:
        return url_for("static", filename=f"{DIST}/{file}")

    def vite_entry(name: str) -> EntryAssets:
        return manifest.entry(ENTRIES[name], static_url)

    app.jinja_env.globals["vite_entry"] = vite_entry

    prefix = (app.static_url_path or "/static") + f"/{DIST}/assets/"

    @app.after_request
    def _cache_hashed_assets(response):
        if request.path.startswith(prefix) and response.status_code in (200, 304):
            response.headers["Cache-Control"] = IMMUTABLE
        return response


def current_manifest() -> Manifest:
    return current_app.extensions["shetphone_assets"]
