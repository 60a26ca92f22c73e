"""The official user split shared by UCI HAR and UCI HAPT (same 30 volunteers)."""

from __future__ import annotations

from collections.abc import Iterable

from streams.datasets.base import StreamDataset

HAPT_TEST_USERS: tuple[int, ...] = (2, 4, 9, 10, 12, 13, 18, 20, 24)
"""Users in the official test split of UCI HAR and UCI HAPT; the other 21 are for training."""


def split_by_user(
    dataset: StreamDataset, test_users: Iterable[int] = HAPT_TEST_USERS
) -> tuple[StreamDataset, StreamDataset]:
    """``(train, test)``: streams of ``test_users`` go to test, every other stream to train.

    Streams without a user go to train. Never split by time inside a stream: overlapping
    windows of one person leak between the halves.
    """
    test = set(test_users)
    train = tuple(s for s in dataset.streams if s.user not in test)
    return dataset.with_streams(train), dataset.select_users(test)
