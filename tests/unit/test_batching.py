"""Coalesced and cached reads, and the client-side rate limit, with a counting fake ECR."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from ecr_tag_localenv.waiting import wait_for
from ecr_tag_operator.batching import SharedReads
from ecr_tag_operator.manifests import digest_of
from ecr_tag_operator.model import (
    EcrCallError,
    Failure,
    Image,
    ImageId,
    Images,
    LayerInfo,
    Layers,
    PutOutcome,
    ReadPolicy,
    Registry,
)
from ecr_tag_operator.ports import NO_POLICY
from ecr_tag_operator.ratelimit import FairBucket, RateLimits, TokenBucket

WHERE = Registry("us-east-1", None)
MANIFEST = '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
DIGEST = digest_of(MANIFEST)


class FakeEcr:
    def __init__(self, fail: bool = False) -> None:
        self.get_calls: list[list[ImageId]] = []
        self.layer_calls: list[list[str]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def batch_get_image(
        self, where: Registry, repository: str, ids: Sequence[ImageId], policy: ReadPolicy = NO_POLICY
    ) -> Images:
        with self.lock:
            self.get_calls.append(list(ids))
        if self.fail:
            raise EcrCallError(Failure("BatchGetImage", "RepositoryNotFoundException", "gone"))
        images = [Image(ImageId(i.tag, DIGEST), MANIFEST, None) for i in ids if i.tag != "missing"]
        failures = [Failure("BatchGetImage", "ImageNotFound", "no", image_id=i) for i in ids if i.tag == "missing"]
        return Images(tuple(images), tuple(failures))

    def check_layers(
        self, where: Registry, repository: str, digests: Sequence[str], policy: ReadPolicy = NO_POLICY
    ) -> Layers:
        with self.lock:
            self.layer_calls.append(list(digests))
        return Layers(tuple(LayerInfo(d, "AVAILABLE", 1) for d in digests if d != "gone"), ())

    def put_image(self, *args: object) -> PutOutcome:
        raise NotImplementedError

    def delete_tags(self, *args: object) -> tuple[Failure, ...]:
        raise NotImplementedError


def many(reads: SharedReads, count: int, patience: float) -> list[Images]:
    barrier = threading.Barrier(count)

    def one(n: int) -> Images:
        barrier.wait()
        return reads.batch_get_image(
            WHERE, "team/app", [ImageId(f"t{n}"), ImageId("shared")], ReadPolicy(patience=patience)
        )

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_concurrent_reads_share_calls_and_each_gets_its_own_answer() -> None:
    fake = FakeEcr()
    results = many(SharedReads(fake), 30, patience=0.5)
    assert len(fake.get_calls) == 1
    assert len(fake.get_calls[0]) == 31  # 30 distinct tags and the shared one, once
    for n, result in enumerate(results):
        assert {i.image_id.tag for i in result.images} == {f"t{n}", "shared"}


def test_batches_hold_at_most_100_ids() -> None:
    fake = FakeEcr()
    many(SharedReads(fake), 120, patience=0.5)
    assert all(len(call) <= 100 for call in fake.get_calls)
    assert len(fake.get_calls) == 2
    # 120 distinct tags, and the shared one once in each batch (a batch de-duplicates within itself)
    assert sum(len(call) for call in fake.get_calls) == 122


def test_reads_wider_than_one_call_fill_each_call_with_the_tags_of_the_call_before() -> None:
    # 50 drift checks of one group, each reading 100 shared tags and its own source tag (101 ids: two
    # calls alone, 100 for the 50). Each call holds the tags the call before left over and the next
    # check's first tags: 51 calls, every one full but the last.
    fake, members = FakeEcr(), 50
    reads, barrier = SharedReads(fake), threading.Barrier(members)
    shared = [ImageId(f"t{i}") for i in range(100)]

    def one(n: int) -> Images:
        barrier.wait()
        return reads.batch_get_image(WHERE, "team/app", [*shared, ImageId(f"b{n}")], ReadPolicy(patience=2.0))

    with ThreadPoolExecutor(members) as pool:
        results = list(pool.map(one, range(members)))
    assert len(fake.get_calls) == members + 1
    assert all(len(call) <= 100 for call in fake.get_calls)
    for n, result in enumerate(results):
        assert {i.image_id.tag for i in result.images} == {*(i.tag for i in shared), f"b{n}"}


def test_impatient_reads_do_not_wait() -> None:
    fake = FakeEcr()
    reads = SharedReads(fake)
    reads.batch_get_image(WHERE, "team/app", [ImageId("a")])
    reads.batch_get_image(WHERE, "team/app", [ImageId("b")])
    assert len(fake.get_calls) == 2


def test_failures_go_to_who_asked() -> None:
    fake = FakeEcr()
    reads = SharedReads(fake)
    got = reads.batch_get_image(WHERE, "team/app", [ImageId("missing"), ImageId("here")])
    assert [f.image_id for f in got.failures] == [ImageId("missing")]
    assert [i.image_id.tag for i in got.images] == ["here"]


def test_a_whole_call_error_reaches_every_member() -> None:
    reads = SharedReads(FakeEcr(fail=True))
    errors: list[str] = []

    def one(n: int) -> None:
        try:
            reads.batch_get_image(WHERE, "team/app", [ImageId(f"t{n}")], ReadPolicy(patience=1.0))
        except EcrCallError as exc:
            errors.append(exc.failure.code)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert errors == ["RepositoryNotFoundException"] * 5


def test_manifests_read_by_digest_are_cached() -> None:
    fake = FakeEcr()
    reads = SharedReads(fake)
    reads.batch_get_image(WHERE, "team/app", [ImageId("a")])
    got = reads.batch_get_image(WHERE, "team/app", [ImageId(digest=DIGEST)])
    assert len(fake.get_calls) == 1
    assert got.images[0].manifest == MANIFEST
    # Another repository has its own existence: not served from this one's cache.
    reads.batch_get_image(WHERE, "team/other", [ImageId(digest=DIGEST)])
    assert len(fake.get_calls) == 2


def test_available_layers_are_cached_for_max_age_only() -> None:
    now = [100.0]
    fake = FakeEcr()
    reads = SharedReads(fake, clock=lambda: now[0])
    cached = ReadPolicy(layer_max_age=60)
    reads.check_layers(WHERE, "team/app", ["a", "gone"], cached)
    reads.check_layers(WHERE, "team/app", ["a", "gone"], cached)
    assert fake.layer_calls == [["a", "gone"], ["gone"]]  # a missing layer is always re-checked
    now[0] += 61
    reads.check_layers(WHERE, "team/app", ["a"], cached)
    assert fake.layer_calls[-1] == ["a"]
    reads.check_layers(WHERE, "team/app", ["a"])  # no max age given: no cache
    assert len(fake.layer_calls) == 4


def test_token_bucket_paces_to_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(rate=10, burst=10, clock=lambda: now[0], sleep=sleep)
    for _ in range(30):
        bucket.acquire()
    assert len(slept) == 20  # the burst of 10 goes at once, the other 20 wait
    assert now[0] == pytest.approx(2.0)  # ... at 10/s


def test_rate_limits_are_per_account_region_and_operation() -> None:
    limits = RateLimits({"PutImage": 1000.0})
    assert limits.acquire(None, "us-east-1", "BatchGetImage") == 0.0
    for account in ("111111111111", "222222222222"):
        waited = [limits.acquire(account, "us-east-1", "PutImage") for _ in range(1000)]
        assert max(waited) == 0.0


def test_writes_of_one_quota_go_round_robin_across_namespaces() -> None:
    """One namespace's backlog does not hold another's single write behind it."""
    bucket = FairBucket(rate=50, burst=1)
    order: list[str] = []
    lock = threading.Lock()
    arrived: list[int] = []

    def write(tenant: str) -> None:
        if tenant == "team-a":
            with lock:
                arrived.append(len(order))  # how many writes were served before it asked
        bucket.acquire(tenant)
        with lock:
            order.append(tenant)

    with ThreadPoolExecutor(12) as pool:
        backlog = [pool.submit(write, "team-b") for _ in range(10)]
        wait_for("team-b's calls queued", lambda: bucket.waiting >= 9, timeout=10, every=0.005)
        waiting_before = bucket.waiting
        single = pool.submit(write, "team-a")
        for f in [*backlog, single]:
            f.result(timeout=10)
    assert len(order) == 11
    # Served at its first turn: at most the write being handed out and one more come between, not
    # the team-b writes that were waiting (a first-come bucket would serve them all first).
    assert order.index("team-a") - arrived[0] <= 2, (order, arrived, waiting_before)
    assert waiting_before >= 5


@pytest.mark.parametrize(("fair", "served_within"), [(True, 1), (False, 5)])
def test_fair_writes_setting_chooses_round_robin_or_arrival_order(fair: bool, served_within: int) -> None:
    """``fair_writes`` off puts every namespace's writes in one queue: team-a's single write waits
    behind the 5 team-b writes that came first; on, it is served at its first turn."""
    now = [0.0]
    limits = RateLimits({"PutImage": 1000.0}, clock=lambda: now[0], fair=fair)
    for _ in range(1000):  # the burst, spent at once: from here on a token needs the clock to move
        limits.acquire_fair(None, "us-east-1", "PutImage", "team-b")
    bucket = limits._fair[("", "us-east-1", "PutImage")]
    order: list[str] = []
    lock = threading.Lock()

    def write(tenant: str) -> None:
        limits.acquire_fair(None, "us-east-1", "PutImage", tenant)
        with lock:
            order.append(tenant)

    with ThreadPoolExecutor(6) as pool:
        futures = []
        for tenant in ["team-b"] * 5 + ["team-a"]:
            futures.append(pool.submit(write, tenant))
            wait_for("writes queued in this order", lambda: bucket.waiting >= len(futures), timeout=10, every=0.001)
        assert bucket.waiting == 6

        def served() -> bool:
            if len(order) < 6:
                now[0] += 0.001  # one token
            return len(order) >= 6

        wait_for("every write served", served, timeout=10, every=0.002)
        for f in futures:
            f.result(timeout=10)
    assert order.count("team-b") == 5
    assert order.index("team-a") <= served_within
    if not fair:
        assert order[-1] == "team-a"


def test_a_fair_bucket_keeps_the_rate() -> None:
    now = [0.0]
    bucket = FairBucket(rate=10, burst=1, clock=lambda: now[0])
    assert bucket.acquire("a") == 0.0
    done = threading.Event()
    thread = threading.Thread(target=lambda: (bucket.acquire("b"), done.set()))
    thread.start()
    assert not done.wait(0.2)  # no token before the clock moves
    now[0] += 0.1
    assert done.wait(5)
    thread.join()


def test_the_manifest_cache_is_bounded_in_bytes() -> None:
    """An index's children are read by digest and cached; manifests of up to 4 MiB each must not grow
    the operator without bound."""
    fake = FakeEcr()
    reads = SharedReads(fake, max_bytes=3 * len(MANIFEST))
    for n in range(10):
        reads._put(("manifest", WHERE, "team/app", f"sha256:{n}"), Image(ImageId(digest=f"sha256:{n}"), MANIFEST, None))
        assert reads.cached_bytes <= 3 * len(MANIFEST)
    assert reads.cached_bytes > 0
