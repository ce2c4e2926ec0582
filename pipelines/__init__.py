"""The socialcorpus pipeline package (readers, stages, engines, the CLI).

Importing it configures Polars' allocator before Polars is loaded: the Polars wheels link
jemalloc (built with the ``_rjem_`` prefix, so it reads ``_RJEM_MALLOC_CONF``), whose default
(with Polars' own settings, a decay of 500 ms applied only when the allocator is next called)
keeps freed pages resident while nothing allocates, and so carried one stage's freed tables
into the next stage's peak. A background thread returns them within 100 ms instead, and
``pipelines.core.memory.release`` waits that out between stages (docs/scale.md, "Retained
memory between stages"; a decay of 0 returned a little more but cost the Polars stages about a
quarter more time, every free becoming an madvise and every reuse a page fault). An
``_RJEM_MALLOC_CONF`` already in the environment wins; nothing changes where Polars was
imported first.
"""

import os

JEMALLOC_CONF = "background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:0"
os.environ.setdefault("_RJEM_MALLOC_CONF", JEMALLOC_CONF)
