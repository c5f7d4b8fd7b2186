"""Browser tests: Playwright driving Debian's chromium against the real server."""
