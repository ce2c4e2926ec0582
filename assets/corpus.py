"""Timeline, reading histories and pair-perspective examples: the SociaLLM corpus itself."""

from __future__ import annotations

from assets.factory import stage_asset

GROUP = "corpus"

timeline = stage_asset("timeline", "timeline", GROUP, ["messages_dedup"],
                       "Every message with a dense seq on its timeline (wall clock, or one per ordinal game).")
reading_histories = stage_asset("histories", "reading_histories", GROUP, ["timeline"],
                                "What each author had read before writing, and their own previous messages, "
                                "by reference; strictly causal.")
pair_examples = stage_asset("examples", "pair_examples", GROUP, ["timeline", "reading_histories"],
                            "One example per (author, interlocutor, target), split by thread hash.")

ASSETS = [timeline, reading_histories, pair_examples]
