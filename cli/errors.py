"""Exit codes and the one way the CLI reports a failure."""

from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_DATABASE = 4
EXIT_NOT_FOUND = 5  # the admin API answered 404
EXIT_CONFLICT = 6   # 409, 412, 428: it exists, changed meanwhile, or something depends on it
EXIT_AUTH = 7       # 401, 403: no valid token, or a token without the scope
EXIT_SERVER = 8     # 5xx, or the service cannot be reached


class CLIError(Exception):
    """A failure the operator can act on: what failed, where, and what to do."""

    def __init__(self, service: str, detail: str, hint: str | None = None, code: int = EXIT_FAILURE) -> None:
        self.service = service
        self.detail = detail
        self.hint = hint
        self.code = code
        super().__init__(detail)

    def report(self) -> int:
        print(f"chamicore: {self.service}: {self.detail}", file=sys.stderr)
        if self.hint:
            print(f"  hint: {self.hint}", file=sys.stderr)
        return self.code


class UsageError(CLIError):
    """The command line itself is wrong: exit code 2."""

    def __init__(self, detail: str, hint: str | None = None) -> None:
        super().__init__("cli", detail, hint, EXIT_USAGE)
