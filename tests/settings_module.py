"""Settings of a Comet process a test starts: a settings module written for it.

Only the variables of the README's "Configuration" table are read from the
environment. A process a test starts that needs another value of any other setting
(its own queue and cache keys, a short lease, a small pool) gets a settings module
of its own: one that imports the usual module and then changes those settings.
"""

import os
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def settings_environment(
    directory: Path, base: str, *statements: str, **settings: Any
) -> dict[str, str]:
    """Write a settings module into `directory`; return the environment that selects it.

    The module imports everything from `base` (e.g. "comet.settings.test"), assigns
    each of `settings` (a value written as its `repr`), then runs each of `statements`
    (Python source, for a change to part of a setting: `CACHES["default"][...] = ...`).
    Merge the result into the process's environment: it sets DJANGO_SETTINGS_MODULE,
    and PYTHONPATH so that the module can be imported from any working directory.
    """
    name = f"settings_{uuid.uuid4().hex[:12]}"
    lines = [f"from {base} import *  # noqa: F403"]
    lines += [f"{key} = {value!r}" for key, value in settings.items()]
    lines += statements
    (directory / f"{name}.py").write_text("\n".join(lines) + "\n")
    paths = [str(directory), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {"DJANGO_SETTINGS_MODULE": name, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
