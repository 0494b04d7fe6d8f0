"""``openecr fsck``: checks that every stored byte is what its digest says and that every
manifest's references exist; with repair, corrupt blobs are quarantined, not served."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from openecr.storage.blobs import BlobNotFound, BlobStore, parse_digest
from openecr.storage.metadata.store import MetadataStore

__all__ = ["FsckReport", "check_storage"]


@dataclass
class FsckReport:
    blobs_checked: int = 0
    references_checked: int = 0
    problems: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "blobsChecked": self.blobs_checked,
            "referencesChecked": self.references_checked,
            "problems": self.problems,
            "quarantined": self.quarantined,
        }


async def _actual_digest(blobs: BlobStore, digest: str) -> tuple[str, int] | None:
    algorithm, _ = parse_digest(digest)
    hasher = hashlib.new(algorithm)
    size = 0
    try:
        async with await blobs.open_reader(digest) as reader:
            async for chunk in reader:
                hasher.update(chunk)
                size += len(chunk)
    except BlobNotFound:
        return None
    return f"{algorithm}:{hasher.hexdigest()}", size


async def check_storage(store: MetadataStore, blobs: BlobStore, *, repair: bool) -> FsckReport:
    report = FsckReport()
    async with store.read() as session:
        recorded = await session.all_blobs()
        references = await session.all_image_references()
    present: set[str] = set()
    for digest, size in recorded:
        report.blobs_checked += 1
        actual = await _actual_digest(blobs, digest)
        if actual is None:
            report.problems.append(f"blob {digest}: recorded but its bytes are missing")
            continue
        actual_digest, actual_size = actual
        if actual_digest != digest or actual_size != size:
            report.problems.append(
                f"blob {digest}: content hashes to {actual_digest} ({actual_size} bytes, "
                f"{size} recorded)"
            )
            if repair and await blobs.quarantine(digest):
                report.quarantined.append(digest)
            continue
        present.add(digest)
    async with store.read() as session:
        for registry_id, repository, image, target, is_manifest in references:
            report.references_checked += 1
            if is_manifest:
                found = await session.get_image_summaries(registry_id, repository, [target])
                if target not in found:
                    report.problems.append(
                        f"image {repository}@{image}: references missing manifest {target}"
                    )
            elif target not in present:
                report.problems.append(
                    f"image {repository}@{image}: references missing or corrupt blob {target}"
                )
    return report
