"""The fcbench command line: one command per registered verb, built from the verb's options.

Parsing and rendering only. What a command does is the verb's library function
(:mod:`fcbench.verbs`); how its result looks is :mod:`fcbench.render`; how its options are
spelled is the options dataclass (:mod:`fcbench.options`). Heavy imports happen inside the
verbs, so ``fcbench --help`` stays fast.
"""

from __future__ import annotations

import sys

import click

from fcbench.errors import FcbenchError


class _Group(click.Group):
    """The verbs come from the registry, so a plugin's verb is a command like any other."""

    def _verbs(self):
        from fcbench.verbs import verbs

        return verbs()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self._verbs())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from fcbench.cli.build import command

        found = self._verbs().get(name)
        return command(found) if found else None


app = _Group(name="fcbench", help="Compress vision models, convert them to edge runtimes, and measure latency and "
                                  "accuracy.", no_args_is_help=True,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})


def main() -> None:
    """Console entry point: FcbenchError -> one line on stderr and its exit code."""
    try:
        code = app.main(standalone_mode=False, prog_name="fcbench")
    except FcbenchError as exc:
        print(f"fcbench: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        # a verb may say what it kept and how to go on (train: the last checkpoint and the resume command)
        why = str(exc.__cause__ if isinstance(exc, click.exceptions.Abort) and exc.__cause__ else exc)
        print("fcbench: interrupted" + (f": {why}" if why else ""), file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
