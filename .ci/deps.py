"""Print the runtime dependencies plus the given extras of pyproject.toml as a requirements file.

Used by the Makefile to install dependencies once, without building the extension.
"""

import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
reqs = list(project["dependencies"])
for extra in filter(None, (sys.argv[1] if len(sys.argv) > 1 else "").split(",")):
    reqs += project["optional-dependencies"][extra]
print("\n".join(reqs))
