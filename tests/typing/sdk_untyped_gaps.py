"""Type-checked, never executed: misuse that ``mypy --strict`` should reject but, today,
accepts, because these SDK entry points are typed ``Any`` (see ``test_sdk_typing.py``,
which expects the marked lines to be errors and is an ``xfail`` until they are).
"""

from __future__ import annotations

from openecr import ECR, AsyncECR


def sync_gaps(ecr: ECR) -> None:
    # with_options(**options: Any): a misspelt option is a TypeError only at run time
    ecr.with_options(max_attemps=3)  # wrong: call-arg
    ecr.with_options(timeout="fast")  # wrong: arg-type
    # wait_for_image_scan_complete(image_id: Any): a string is accepted
    ecr.wait_for_image_scan_complete(repository_name="a", image_id="v1")  # wrong: arg-type
    # the waiters return Any: a misspelt attribute of the result goes unnoticed
    preview = ecr.wait_for_lifecycle_policy_preview_complete(repository_name="a")
    print(preview.statuz)  # wrong: attr-defined


async def async_gaps(ecr: AsyncECR) -> None:
    ecr.with_options(region=1)  # wrong: arg-type
    wait = ecr.wait_for_image_scan_complete
    scan = await wait(repository_name="a", image_id=None)  # wrong: arg-type
    print(scan.image_scan_statuz)  # wrong: attr-defined
