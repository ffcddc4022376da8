"""Deterministic bytes for downloads: the byte at offset i is i % 256."""

_BLOCK = bytes(range(256)) * 256  # 64 KiB, a whole number of periods


def pattern_chunks(size, chunk_size):
    """Yields `size` bytes of the pattern in chunks of at most `chunk_size` bytes."""
    offset = 0
    while offset < size:
        n = min(chunk_size, size - offset)
        start = offset % 256
        out = bytearray()
        while len(out) < n:
            take = min(n - len(out), len(_BLOCK) - start)
            out += _BLOCK[start:start + take]
            start = 0
        yield bytes(out)
        offset += n
