"""Type-checked, never executed: calls ``mypy --strict`` must reject.

Each wrong line carries a ``# wrong: <mypy error code>`` marker. ``tests/unit/test_sdk_typing.py``
asserts that mypy fails on this file with an error of that code on exactly the marked lines,
which proves the check of ``sdk_every_operation.py`` can fail.
"""

from __future__ import annotations

from openecr import ECR, AsyncECR
from openecr import models as m


def sync_misuse(ecr: ECR) -> None:
    ecr.create_repository(repository_name=123)  # wrong: arg-type
    ecr.create_repository("team/app")  # wrong: call-arg
    ecr.put_image(repository_name="a")  # wrong: call-arg
    ecr.describe_registry(registry_id="1")  # wrong: call-arg
    ecr.batch_get_image(repository_name="a", image_ids=[{"imageTag": "v1"}])  # wrong: list-item
    ecr.start_image_scan(repository_name="a", image_id="sha256:0")  # wrong: arg-type
    ecr.upload_layer_part(
        repository_name="a",
        upload_id="u",
        part_first_byte=0,
        part_last_byte=0,
        layer_part_blob="text, not bytes",  # wrong: arg-type
    )
    ecr.tag_resource(resource_arn="arn", tags={"team": "sdk"})  # wrong: arg-type
    result = ecr.describe_repositories()
    print(result.nextToken)  # wrong: attr-defined
    created = ecr.create_repository(repository_name="a")
    name: str = created.repository.repository_name  # wrong: union-attr
    detail: m.ImageDetail = ecr.describe_images(repository_name="a")  # wrong: assignment
    print(name, detail)


async def async_misuse(ecr: AsyncECR) -> None:
    registry: m.DescribeRegistryResponse = ecr.describe_registry()  # wrong: assignment
    for image_id in ecr.iter_list_images(repository_name="a"):  # wrong: attr-defined
        print(image_id)
    page = await ecr.list_images(repository_name="a")
    count: int = page.image_ids  # wrong: assignment
    print(registry, count)
