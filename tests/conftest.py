"""The project's tests run users' cells eagerly: compiling one takes seconds to tens of seconds, and
one test (tests/test_user_cells.py) compiles on purpose."""

import os

os.environ.setdefault("RNNMEMORY_COMPILE", "off")
