"""A click command from a verb: one option per field of its options dataclass, plus ``--format`` and, for
verbs that measure, ``--store``. The values go through the same parsers recipes use."""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, fields
from typing import Any

import click

from fcbench.errors import FcbenchError
from fcbench.options import Checked, OptionError, check_options, flag

_MULTI_PARSERS = ("parse_kv", "parse_list", "parse_ints", "parse_format_options", "parse_model_options",
                  "parse_gate")


def _base_type(hint: Any) -> Any:
    """``int | None`` -> int; ``list[str]`` -> list; anything else as it is."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else str
    return origin or hint


def _params(config: type) -> list[click.Parameter]:
    hints = typing.get_type_hints(config)
    params: list[click.Parameter] = []
    for f in fields(config):
        md = f.metadata
        if f.name.startswith("_") or not md.get("cli", True):
            continue
        base = _base_type(hints[f.name])
        parse = md.get("parse")
        multi = parse.__name__ in _MULTI_PARSERS if parse is not None else base in (list, dict)
        help_text = md.get("help", "")
        if md.get("argument"):
            params.append(click.Argument([f.name], nargs=-1 if multi else 1,
                                         required=md.get("required", True)))
            continue
        decls = list(dict.fromkeys([f.name, "--" + f.name.replace("_", "-"), *md.get("flags", ())]))
        if base is bool:
            params.append(click.Option(decls, is_flag=True, default=None, help=help_text))
        elif multi:
            params.append(click.Option(decls, multiple=True, help=help_text, metavar=md.get("metavar")))
        else:
            default = f.default if f.default is not MISSING else None
            # numbers arrive as text and are read and range-checked by options.check_options, so a bad
            # value is the same one-line error as in a recipe
            metavar = md.get("metavar") or {int: "INTEGER", float: "FLOAT"}.get(base)
            shown = f"  [default: {default}]" if default not in (None, "") else ""
            params.append(click.Option(decls, type=str, default=None, help=help_text + shown, metavar=metavar))
    return params


def _values(config: type, raw: dict[str, Any]) -> dict[str, Any]:
    """Given command-line values only (what the user left out keeps the dataclass default), parsed."""
    by_name = {f.name: f for f in fields(config)}
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if value is None or value == ():
            continue
        parse = by_name[name].metadata.get("parse")
        out[name] = parse(list(value) if isinstance(value, tuple) else value, name) if parse else (
            list(value) if isinstance(value, tuple) else value)
    return out


def command(verb) -> click.Command:
    params = _params(verb.config)
    if len(verb.formats) > 1:
        params.append(click.Option(["fmt", "--format"], default="table", show_default=True,
                                   help=", ".join(verb.formats)))
    if verb.stores:
        params.append(click.Option(["store", "--store"], default=None,
                                   help="Results store: an SQLite file or a postgresql://user@host:port/db URL. "
                                        "Default: results/fcbench.sqlite"))

    def callback(**raw: Any) -> int:
        from fcbench.cli.session import run_verb

        fmt = raw.pop("fmt", None) or "table"
        store = raw.pop("store", None) if verb.stores else None
        if fmt not in verb.formats:
            raise FcbenchError(f"--format must be one of {', '.join(verb.formats)}, got '{fmt}'")
        try:
            cfg = verb.config(**_values(verb.config, raw))
            if not isinstance(cfg, Checked):  # a plugin's plain dataclass
                check_options(cfg)
            if hasattr(cfg, "validate"):
                cfg.validate()
        except OptionError as exc:  # named as the command line spells it
            raise FcbenchError(f"{verb.name}: {flag(verb.config, exc.key)} {exc.problem}") from None
        return run_verb(verb, cfg, fmt, store)

    summary = verb.help.split(". ")[0].rstrip(".") + "."
    return click.Command(verb.name, params=params, callback=callback, help=verb.help, short_help=summary,
                         context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
