"""ECR reads for one reconcile: the source image (and an index's children), the layers in the target
repository, and where each tag points now. The result is plain data for the pure planner."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from .manifests import Manifest, ManifestError, digest_of, parse_manifest
from .model import EcrCallError, Failure, Image, ImageId, Mutability, Observation, ReadPolicy, Registry, SourceImage
from .ports import NO_POLICY, EcrApi
from .spec import EcrImageTagSpec


def _matches(asked: ImageId, got: ImageId) -> bool:
    if asked.tag is not None and got.tag != asked.tag:
        return False
    return asked.digest is None or got.digest == asked.digest


def _first(images: Iterable[Image], asked: ImageId) -> Image | None:
    return next((img for img in images if _matches(asked, img.image_id)), None)


def _as_source(
    ecr: EcrApi, where: Registry, repository: str, image: Image, policy: ReadPolicy
) -> SourceImage | Failure:
    """Check the bytes are the image's own; read by digest when ECR converted a manifest read by tag."""
    if image.digest is None or digest_of(image.manifest) != image.digest:
        if image.digest is None:
            return Failure("BatchGetImage", "ImageNotFound", "ECR returned an image without a digest")
        again = ecr.batch_get_image(where, repository, [ImageId(digest=image.digest)], policy)
        if again.failures or not again.images or digest_of(again.images[0].manifest) != image.digest:
            return Failure(
                "BatchGetImage",
                again.failures[0].code if again.failures else "ImageDigestDoesNotMatch",
                "the manifest ECR returned does not hash to the image digest",
                image_id=ImageId(digest=image.digest),
            )
        image = again.images[0]
    try:
        parsed = parse_manifest(image.manifest, image.media_type)
    except ManifestError as exc:
        return Failure("BatchGetImage", "UnsupportedManifest", str(exc), image_id=image.image_id)
    return SourceImage(image.manifest, image.media_type or parsed.media_type, parsed)


def observe(
    ecr: EcrApi,
    spec: EcrImageTagSpec,
    target_at: Registry,
    source_at: Registry,
    released: Sequence[str] = (),
    policy: ReadPolicy = NO_POLICY,
) -> Observation:
    """Read everything the planner needs. Whole-call failures raise EcrCallError.

    The source is always read fresh (its manifest is confirmed to be in ECR now); only an index's
    children, read by digest, may come from the cache."""
    fresh = replace(policy, cached_manifests=False)
    asked = ImageId(spec.source.tag, spec.source.digest)
    tags = list(dict.fromkeys([*spec.tags, *released]))
    tag_ids = [ImageId(tag=t) for t in tags]

    # One batched read serves the source and the current tags when both live in one repository.
    if spec.same_repository:
        both = ecr.batch_get_image(target_at, spec.repository_name, [asked, *tag_ids], fresh)
        source_images, tag_images, failures = both.images, both.images, both.failures
    else:
        src = ecr.batch_get_image(source_at, spec.source_repository, [asked], fresh)
        cur = ecr.batch_get_image(target_at, spec.repository_name, tag_ids, fresh)
        source_images, tag_images, failures = src.images, cur.images, src.failures + cur.failures

    tag_set = set(tags)
    tag_digests: dict[str, str | None] = {}
    for tag in tags:
        found = _first(tag_images, ImageId(tag=tag))
        tag_digests[tag] = found.digest if found else None
    tag_failures = tuple(
        f
        for f in failures
        if f.image_id is not None
        and f.image_id.tag in tag_set
        and f.image_id.digest is None
        and f.code != "ImageNotFound"  # a tag that does not exist yet is not a failure
    )
    source_failure = next((f for f in failures if f.image_id == asked), None)

    image = _first(source_images, asked)
    if image is None:
        missing = source_failure or Failure(
            "BatchGetImage", "ImageNotFound", "the source image was not returned", image_id=asked
        )
        if missing.code == "ImageNotFound":
            missing = _archived(ecr, source_at, spec.source_repository, asked) or missing
        return Observation(None, missing, tag_digests=tag_digests, tag_failures=tag_failures)
    source = _as_source(ecr, source_at, spec.source_repository, image, fresh)
    if isinstance(source, Failure):
        return Observation(None, source, tag_digests=tag_digests, tag_failures=tag_failures)

    children_present: dict[str, bool] = {}
    child_failures: tuple[Failure, ...] = ()
    if source.parsed.is_index:
        source, children_present, child_failures = _read_children(ecr, spec, source_at, target_at, source, policy)

    digests = [blob.digest for blob, _ in source.blobs()]
    layers = ecr.check_layers(target_at, spec.repository_name, digests, policy) if digests else None
    moving = [t for t in spec.tags if tag_digests.get(t) not in (None, source.digest)]
    return Observation(
        source,
        layers={info.digest: info for info in layers.layers} if layers else {},
        layer_failures=layers.failures if layers else (),
        children_present=children_present,
        child_failures=child_failures,
        tag_digests=tag_digests,
        tag_failures=tag_failures,
        mutability=_mutability(ecr, target_at, spec.repository_name, policy)
        if moving and spec.mode == "Enforce"
        else None,
    )


def _archived(ecr: EcrApi, where: Registry, repository: str, asked: ImageId) -> Failure | None:
    """An image ECR does not serve may be archived (or being restored) rather than gone: ECR's pulls
    answer as for a missing image, DescribeImages with imageStatus ANY tells which."""
    state = ecr.image_status(where, repository, asked)
    if state not in ("ARCHIVED", "ACTIVATING"):
        return None
    image_id = f"imageDigest={asked.digest}" if asked.digest else f"imageTag={asked.tag}"
    if state == "ACTIVATING":
        return Failure("DescribeImages", "ImageRestoring", f"the source ({image_id}) is being restored", image_id=asked)
    # The command first: messages are trimmed to a few hundred characters.
    restore = (
        f"aws ecr update-image-storage-class --repository-name {repository} --image-id {image_id} "
        "--target-storage-class STANDARD"
    )
    return Failure(
        "DescribeImages", "ImageArchived", f"the source is archived; restore it with: {restore}", image_id=asked
    )


def _mutability(ecr: EcrApi, where: Registry, repository: str, policy: ReadPolicy) -> Mutability | None:
    """Which tags ECR refuses to move, read only when a tag is about to move: so that a tag ECR will
    refuse is not put again at every check. Not known when IAM does not allow DescribeRepositories
    (PutImage then tells)."""
    try:
        return ecr.describe_mutability(where, repository, policy)
    except EcrCallError as exc:
        if exc.failure.code == "AccessDeniedException":
            return None
        raise


def _read_children(
    ecr: EcrApi,
    spec: EcrImageTagSpec,
    source_at: Registry,
    target_at: Registry,
    source: SourceImage,
    policy: ReadPolicy,
) -> tuple[SourceImage, dict[str, bool], tuple[Failure, ...]]:
    """Read an index's children by digest in one batched call, and whether the target has them."""
    ids = [ImageId(digest=c.digest) for c in source.parsed.children]
    got = ecr.batch_get_image(source_at, spec.source_repository, ids, policy)
    children: list[Manifest] = []
    texts: list[tuple[str, str, str]] = []
    failures = list(got.failures)
    for child in got.images:
        try:
            parsed = parse_manifest(child.manifest, child.media_type)
            children.append(parsed)
            texts.append((parsed.digest, child.manifest, child.media_type or parsed.media_type))
        except ManifestError as exc:
            failures.append(Failure("BatchGetImage", "UnsupportedManifest", str(exc), image_id=child.image_id))
    if spec.same_repository:
        present = {c.digest for c in children}
    else:
        in_target = ecr.batch_get_image(target_at, spec.repository_name, ids, policy)
        present = {img.digest for img in in_target.images if img.digest}
    source = SourceImage(source.manifest, source.media_type, source.parsed, tuple(children), tuple(texts))
    return source, {i.digest: i.digest in present for i in ids if i.digest}, tuple(failures)
