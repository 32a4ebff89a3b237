#!/usr/bin/env bash
# Install the PyTorch reference ltx-core / ltx-pipelines 1.2.0 into a virtual environment.
#
# 1.2.0 is not on PyPI: its two packages are taken from the tag v1.2.0 of the public Lightricks/LTX-2
# repository, out of a git directory (a bare mirror or a clone) given as the second argument.
# The third-party packages come from PyPI, pinned in requirements-1.2.0.txt.
#
# usage: install_reference_1_2_0.sh VENV_DIR LTX2_GIT_DIR
#   VENV_DIR      created with python3.11 if it does not exist (e.g. .venv-ref12, gitignored)
#   LTX2_GIT_DIR  git directory of Lightricks/LTX-2 holding the tag v1.2.0
set -euo pipefail

if [ "$#" -ne 2 ]; then
    echo "usage: $0 VENV_DIR LTX2_GIT_DIR" >&2
    exit 2
fi
venv=$1
src=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tag=v1.2.0
# the commit the tag pointed at when these pins were made; a moved tag is refused
expected_commit=d151147788a9284cca791edc6ce898007e727fe6

commit=$(git --git-dir "$src" rev-parse "$tag^{commit}")
if [ "$commit" != "$expected_commit" ]; then
    echo "$tag in $src is $commit, expected $expected_commit" >&2
    exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
    python3.11 -m venv "$venv"
fi
"$venv/bin/pip" install -r "$here/requirements-1.2.0.txt"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git --git-dir "$src" archive "$tag" packages/ltx-core packages/ltx-pipelines | tar -x -C "$work"
# --no-deps: every dependency is pinned in requirements-1.2.0.txt (the packages' own ranges are looser)
"$venv/bin/pip" install --no-deps "$work/packages/ltx-core" "$work/packages/ltx-pipelines"
"$venv/bin/pip" check
"$venv/bin/python" - <<'EOF'
from importlib import metadata

import ltx_core  # noqa: F401
import ltx_pipelines.distilled  # noqa: F401

for name in ("ltx-core", "ltx-pipelines", "torch", "transformers"):
    print(name, metadata.version(name))
EOF
