"""The README's test command (``pytest -n 2 --dist loadgroup``) relies on pytest-xdist's groups.

Tests marked ``xdist_group`` must reach one worker together: the zoo's cached shape-only builds and the
8-device subprocess in tests/train/test_parallel.py are shared that way. pytest-xdist marks a grouped test
by appending ``@group`` to its node id on the worker. pytest 9.2 derives node ids from another attribute, so
pytest-xdist 3.8's suffix is lost and the groups silently scatter (every worker then repeats the shared
setup; the suite still passes, only slower). pyproject.toml pins pytest below 9.2; this test fails if the
grouping stops taking effect under loadgroup again.
"""

import pytest


@pytest.mark.xdist_group("suite-grouping-check")
def test_marked_tests_carry_their_group_on_the_worker(request):
    if getattr(request.config.option, "loadgroup", False):  # a pytest-xdist worker under --dist loadgroup
        assert request.node.nodeid.endswith("@suite-grouping-check"), (
            f"pytest-xdist's --dist loadgroup lost the group of {request.node.nodeid}: this pytest and "
            "pytest-xdist do not work together; install the versions pinned in pyproject.toml")
