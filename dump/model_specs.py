"""Which models a dump runs: `NAME=SOURCE[@PRESET]` arguments and `name,source` models files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dump.folder import check_model_name, name_key


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str
    preset: str | None = None


def parse_model_arg(text: str) -> ModelSpec:
    """`NAME=SOURCE` or `NAME=SOURCE@PRESET`. A source path may itself contain '@' only if PRESET is given."""
    name, sep, source = text.partition("=")
    if not sep or not name or not source:
        raise ValueError(f"--model {text!r}: expected NAME=SOURCE or NAME=SOURCE@PRESET")
    preset = None
    if "@" in source:
        source, preset = source.rsplit("@", 1)
        if not source or not preset:
            raise ValueError(f"--model {text!r}: expected NAME=SOURCE@PRESET with both parts non-empty")
    return ModelSpec(check_model_name(name.strip()), source.strip(), preset and preset.strip())


def read_models_file(path: str | Path) -> list[ModelSpec]:
    """Lines `name,source` (optionally `name,source@preset`); blank lines and `#` comments are ignored."""
    specs = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, source = line.partition(",")
        if not sep:
            raise ValueError(f"{path}:{number}: expected 'name,source', got {line!r}")
        try:
            specs.append(parse_model_arg(f"{name.strip()}={source.strip()}"))
        except ValueError as e:
            raise ValueError(f"{path}:{number}: {e}") from None
    return specs


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
