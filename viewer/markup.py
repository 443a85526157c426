"""Text from files and from the user, shown as text. Model and class names come from a manifest anyone can
write, image names from a link anyone can craft: put into Markdown as they are, they would render as headings,
links or remote images. `text` puts them in a code span, where Markdown renders nothing (no emphasis, links,
autolinks, images or HTML), so they show exactly as written."""

from __future__ import annotations

import re


def text(value) -> str:
    """`value` as a Markdown code span that renders as exactly that text, on one line."""
    one_line = " ".join(str(value).splitlines()) or " "
    # A code span's fence is a run of backticks longer than any run inside it (CommonMark), padded with a space
    # where the text itself starts or ends with a backtick.
    fence = "`" * (max((len(run) for run in re.findall(r"`+", one_line)), default=0) + 1)
    pad = " " if one_line.startswith("`") or one_line.endswith("`") else ""
    return f"{fence}{pad}{one_line}{pad}{fence}"
