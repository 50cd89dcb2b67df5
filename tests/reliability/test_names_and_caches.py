"""Round three of the hostile user: names that are not UTF-8, damaged cached values, an
unreadable preset, completion that offers only what is accepted (families 11-15; family 14
and 16 are corpus entries)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile import (
    completion_offers_what_is_accepted,
    damaged_cluster_cache,
    non_utf8_folder_dataset,
    unreadable_preset,
)


@pytest.mark.slow
def test_a_folder_dataset_with_names_that_are_not_utf8(tmp_path: Path) -> None:
    assert not non_utf8_folder_dataset(tmp_path)


@pytest.mark.slow
def test_damaged_cluster_cache_entries_are_computed_again(tmp_path: Path, data_dir: Path) -> None:
    assert not damaged_cluster_cache(tmp_path, data_dir)


def test_an_unreadable_preset_hides_no_other(tmp_path: Path) -> None:
    assert not unreadable_preset(tmp_path)


def test_completion_offers_only_what_sample_accepts(tmp_path: Path, tiny_run: Path) -> None:
    assert not completion_offers_what_is_accepted(tmp_path, tiny_run)
