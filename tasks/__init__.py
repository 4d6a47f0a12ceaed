"""batchflows building blocks: plain functions first, thin Prefect tasks on top.

Arrow allocates through the system allocator here: its default (mimalloc) keeps freed pages
per thread, and with a few chunks in flight that raised a 1M-row import's peak RSS from about
300 MB to 350 MB, for no measurable gain in speed.
"""

import pyarrow as _pyarrow

_pyarrow.set_memory_pool(_pyarrow.system_memory_pool())
