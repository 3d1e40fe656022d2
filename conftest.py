"""The project's own tests drive pytest as a user would, through pytester."""

pytest_plugins = ["pytester"]
