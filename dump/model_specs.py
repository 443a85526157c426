"""Which models a dump runs: `NAME=SOURCE[@PRESET][@TASK]` arguments, `name,source[,backbone]` models files and
`--backbone-weights [NAME=]SOURCE`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from dump.folder import MODEL_NAME_RE, TASKS, check_model_name, name_key


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str
    preset: str | None = None
    task: str | None = None  # None: the task of the model's config
    backbone: str | None = None  # the pretrained DINOv3 backbone of a delta checkpoint (eomt.read_backbone)


def parse_model_arg(text: str, backbone: str | None = None) -> ModelSpec:
    """`NAME=SOURCE`, `NAME=SOURCE@PRESET`, `NAME=SOURCE@TASK` or `NAME=SOURCE@PRESET@TASK` (TASK: panoptic,
    semantic or instance). A source path may itself contain '@' only if PRESET or TASK is given."""
    name, sep, source = text.partition("=")
    if not sep or not name or not source:
        raise ValueError(f"--model {text!r}: expected NAME=SOURCE[@PRESET][@TASK]")
    preset = task = None
    if "@" in source and source.rsplit("@", 1)[1].strip() in TASKS:
        source, task = (part.strip() for part in source.rsplit("@", 1))
    if "@" in source:
        source, preset = source.rsplit("@", 1)
        if not source or not preset:
            raise ValueError(f"--model {text!r}: expected NAME=SOURCE@PRESET with both parts non-empty")
    if not source.strip():
        raise ValueError(f"--model {text!r}: the source is empty")
    return ModelSpec(check_model_name(name.strip()), source.strip(), preset and preset.strip(), task, backbone)


def read_models_file(path: str | Path) -> list[ModelSpec]:
    """Lines `name,source[@preset][@task][,backbone]`; blank lines and `#` comments are ignored."""
    specs = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, rest = line.partition(",")
        source, _, backbone = rest.partition(",")
        if not sep:
            raise ValueError(f"{path}:{number}: expected 'name,source' or 'name,source,backbone', got {line!r}")
        try:
            specs.append(parse_model_arg(f"{name.strip()}={source.strip()}", backbone.strip() or None))
        except ValueError as e:
            raise ValueError(f"{path}:{number}: {e}") from None
    return specs


def with_backbones(specs: list[ModelSpec], arguments: list[str]) -> tuple[list[ModelSpec], str | None]:
    """Applies `--backbone-weights [NAME=]SOURCE` arguments: NAME= gives that model its backbone; without NAME
    the source is the default backbone (returned) for every model that needs one and has none of its own."""
    named, default = {}, None
    for text in arguments:
        name, sep, source = text.partition("=")
        if sep and MODEL_NAME_RE.fullmatch(name) and source:
            named[name] = source
        elif default is None:
            default = text
        else:
            raise ValueError(f"--backbone-weights {text!r}: a second default backbone (the first is {default!r}); "
                             "name the model it is for: --backbone-weights NAME=SOURCE")
    unknown = sorted(set(named) - {spec.name for spec in specs})
    if unknown:
        raise ValueError(f"--backbone-weights names models that are not given: {', '.join(unknown)}")
    return [replace(spec, backbone=named[spec.name]) if spec.name in named else spec for spec in specs], default


def check_unique(specs: list[ModelSpec]) -> list[ModelSpec]:
    seen: dict[str, str] = {}
    for spec in specs:
        other = seen.get(name_key(spec.name))
        if other is not None:
            same = "named" if other == spec.name else f"named {other!r} and"
            raise ValueError(f"two models are {same} {spec.name!r} (file names that differ only in case are one "
                             "file on some systems): give each model its own name")
        seen[name_key(spec.name)] = spec.name
    if not specs:
        raise ValueError("no model given: use --model NAME=SOURCE (repeatable) or --models-file FILE")
    return specs
