"""Shell completion: `eval "$(chamicore completion bash)"` (zsh: `completion zsh`).

The script asks `chamicore __complete WORD...` for candidates, so completion
always knows exactly the commands and options of the installed version.
"""

from __future__ import annotations

import argparse

from cli.command import Commands, Invocation, handles

SCRIPTS = {
    "bash": """_chamicore() {
    local IFS=$'\\n'
    COMPREPLY=($(chamicore __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _chamicore chamicore
""",
    "zsh": """autoload -U +X bashcompinit && bashcompinit
_chamicore() {
    local IFS=$'\\n'
    COMPREPLY=($(chamicore __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _chamicore chamicore
""",
}


def register(commands: Commands) -> None:
    script = handles(commands.add_parser("completion", help="print a shell completion script"), print_script)
    script.add_argument("shell", choices=sorted(SCRIPTS))
    # `__complete` is answered before parsing (partial words are not valid arguments yet): see cli.main.
    commands.add_parser("__complete").add_argument("words", nargs=argparse.REMAINDER)


def print_script(run: Invocation) -> int:
    print(SCRIPTS[run.args.shell], end="")
    return 0


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {name: sub for name, sub in action.choices.items() if not name.startswith("__")}
    return {}


def candidates(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """What may come next, given the words typed so far (the last one possibly partial)."""
    *typed, partial = words or [""]
    current = parser
    for word in typed:
        current = _subcommands(current).get(word, current)
    if partial.startswith("-"):
        pool = [s for a in current._actions for s in a.option_strings if s.startswith("--")]
    else:
        pool = list(_subcommands(current))
        for action in current._actions:
            if action.choices and not isinstance(action, argparse._SubParsersAction) and action.option_strings \
                    and typed and typed[-1] in action.option_strings:
                pool = [str(c) for c in action.choices]
    return sorted(c for c in pool if c.startswith(partial))
