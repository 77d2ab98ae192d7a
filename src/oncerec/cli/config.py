"""Configuration commands: `config show`, `presets`."""

from __future__ import annotations

import argparse


def cmd_config_show(a: argparse.Namespace) -> None:
    """The configuration `train` would run with these arguments, each key with what it means."""
    from oncerec.api import make_config
    from oncerec.config.reference import annotated_config

    print(annotated_config(make_config(overrides=a.overrides)))


def cmd_presets(a: argparse.Namespace) -> None:
    """Each preset with the first sentence of its description; `train group=NAME` picks it."""
    from oncerec.api import presets
    from oncerec.config.catalog import PRESET_GROUPS, first_sentence, preset_description

    for group in [a.group] if a.group else PRESET_GROUPS:
        names = presets(group)
        print(f"{group} ({'oncerec experiment NAME' if group == 'experiment' else f'{group}=NAME'}):")
        width = max(map(len, names))
        for name in names:
            print(f"  {name:<{width}}  {first_sentence(preset_description(group, name))}")


def add_config(sub) -> None:
    s = sub.add_parser("config", help="show the resolved configuration of a command line")
    config = s.add_subparsers(dest="config_command", required=True)
    s = config.add_parser(
        "show",
        help="every key of the configuration these arguments make, with its description",
        description="oncerec config show data=<preset|file|folder> model=<preset|file> [group.key=value ...]",
    )
    s.add_argument("overrides", nargs="*", help="as for train, e.g. data=demo-tiny model=nrms exp.lr=1e-4")
    s.set_defaults(func=cmd_config_show)


def add_presets(sub) -> None:
    from oncerec.config.catalog import PRESET_GROUPS

    s = sub.add_parser("presets", help="list the packaged presets of a config group, or of every group")
    s.add_argument("group", nargs="?", choices=[*PRESET_GROUPS], help="data, model, embed, exp or experiment")
    s.set_defaults(func=cmd_presets)
