"""Nimbus's bootstrap for Python functions.

Nimbus runs `python3 bootstrap.py` with the function's code directory as the working
directory. The runtime itself is `_nimbus_bootstrap.py`, beside this file: imported rather
than run, its bytecode is cached in `__pycache__` after the first start, where a script's
is compiled anew at every start. See README.md beside this file.
"""

import os
import sys

# Python puts this file's directory first on sys.path; make sure of it (the runtime takes
# it off again before it loads user code).
_HERE = os.path.dirname(os.path.abspath(__file__))
if not sys.path or os.path.abspath(sys.path[0] or os.curdir) != _HERE:
    sys.path.insert(0, _HERE)

import _nimbus_bootstrap  # noqa: E402

# User code may have a module of this name: it must get its own.
del sys.modules["_nimbus_bootstrap"]

if __name__ == "__main__":
    sys.exit(_nimbus_bootstrap.main())
