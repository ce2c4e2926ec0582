"""Record dedup, anonymisation and near-dup: from raw rows to messages fit to train on."""

from __future__ import annotations

from typing import Sequence

from dagster import AssetKey, AssetsDefinition

from assets.factory import stage_asset

GROUP = "clean"


def build(raw_keys: Sequence[AssetKey]) -> list[AssetsDefinition]:
    return [
        stage_asset("dedup", "messages", GROUP, raw_keys,
                    "One row per message_id: re-crawled and re-exported copies collapse by a fixed rule."),
        stage_asset("anonymize", "messages_anon", GROUP, ["messages"],
                    "Authors as keyed pseudonyms, mentions as pseudonym tokens, other PII as typed placeholders."),
        stage_asset("neardup", "messages_dedup", GROUP, ["messages_anon"],
                    "Near-duplicates marked (MinHash LSH): they stay in their threads as context, not targets."),
    ]
