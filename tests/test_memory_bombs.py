"""Memory bombs from issue #11, each read in a child process under a 4 GiB address-space limit.

Each child sets ``RLIMIT_AS`` to 4 GiB before importing anything, reads the bomb with the real
reader (or renderer), and reports its outcome and its peak resident memory
(``VmHWM``). A 4 GiB limit is possible here: importing a reader reserves about 320 MiB of
address space. The tests assert the bounded behaviour (a quarantine row, a clear error or a
rendered text) and a peak far below what reading the input whole would take, so a regression
to whole-file reading fails even where it would still fit under the limit.
"""

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 4 << 30
WS = "slack-export-viewer_testarchive"


def run_limited(code: str, env: dict | None = None, timeout: int = 120) -> dict:
    """Run ``code`` in a child under RLIMIT_AS = 4 GiB; it must print one JSON object last.

    The child's report gains ``maxrss_mib``, its own peak resident memory (Linux VmHWM).
    """
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (pytest, which
    # may be large by then), while VmHWM belongs to the child's own address space.
    prologue = (f"import resource, json, re, sys\nresource.setrlimit(resource.RLIMIT_AS, ({LIMIT}, {LIMIT}))\n"
                "def report(**kw):\n"
                "    hwm = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read())\n"
                "    kw['maxrss_mib'] = int(hwm.group(1)) // 1024\n"
                "    print(json.dumps(kw, default=str))\n")
    proc = subprocess.run([sys.executable, "-c", prologue + code], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- a zip whose one member inflates to 10 GiB, written in a few MB and a fraction of a second ----

def _crc32_of_zeros(n: int) -> int:
    """zlib.crc32 of ``n`` zero bytes without touching them: appending a zero byte is an affine
    map on the CRC value, so n bytes are that map to the n-th power (by squaring)."""
    step = [zlib.crc32(b"\0", 1 << i) ^ zlib.crc32(b"\0", 0) for i in range(32)], zlib.crc32(b"\0", 0)

    def apply(m, c):
        cols, const = m
        out = const
        for i in range(32):
            if c >> i & 1:
                out ^= cols[i]
        return out

    def compose(f, g):  # f after g
        return [apply(f, col) ^ f[1] for col in g[0]], apply(f, g[1])

    result = [1 << i for i in range(32)], 0  # the identity
    while n:
        if n & 1:
            result = compose(step, result)
        step = compose(step, step)
        n >>= 1
    return apply(result, 0)


def _deflate_zeros(n: int, chunk: int = 64 << 20):
    """Raw deflate of ``n`` zero bytes: one block of ``chunk`` zeros, flushed to a byte boundary with
    no back-reference past it, can be repeated as often as needed; an empty final block ends it."""
    assert n % chunk == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(b"\0" * chunk) + c.flush(zlib.Z_FULL_FLUSH)
    for _ in range(n // chunk):
        yield block
    yield zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def write_zip(path: Path, members: list[tuple[str, bytes | int]]) -> None:
    """A ZIP64 archive by hand: ``(name, bytes)`` members deflated as usual, ``(name, n)`` members as
    n zero bytes deflated in pieces. zipfile cannot write already-compressed data, hence by hand."""
    central, offset = [], 0
    with open(path, "wb") as f:
        for name, data in members:
            if isinstance(data, int):
                size, crc, pieces = data, _crc32_of_zeros(data), list(_deflate_zeros(data))
            else:
                c = zlib.compressobj(6, zlib.DEFLATED, -15)
                size, crc, pieces = len(data), zlib.crc32(data), [c.compress(data) + c.flush()]
            csize, raw = sum(map(len, pieces)), name.encode()
            extra = struct.pack("<HHQQ", 1, 16, size, csize)
            f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 8, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                                len(raw), len(extra)) + raw + extra)
            for p in pieces:
                f.write(p)
            central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 8, 0, 0x21, crc, 0xFFFFFFFF,
                                       0xFFFFFFFF, len(raw), len(extra), 0, 0, 0, 0, offset) + raw + extra)
            offset = f.tell()
        cd = b"".join(central)
        f.write(cd + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), len(cd), offset, 0))


def test_the_zip_writer_makes_archives_zipfile_reads(tmp_path):
    import zipfile

    assert _crc32_of_zeros(100_003) == zlib.crc32(b"\0" * 100_003)
    z = tmp_path / "t.zip"
    write_zip(z, [("a.json", b"[1, 2]"), ("zeros", 64 << 20)])
    with zipfile.ZipFile(z) as zf:
        assert zf.read("a.json") == b"[1, 2]"
        assert zf.getinfo("zeros").file_size == 64 << 20
        assert zf.read("zeros") == b"\0" * (64 << 20)  # the CRC and sizes check out


@pytest.fixture(scope="module")
def slack_bomb(real, tmp_path_factory):
    """The real export zipped, plus one day file that inflates to 10 GiB (about 10 MB on disk)."""
    export = real / "slack" / WS
    z = tmp_path_factory.mktemp("bomb") / f"{WS}.zip"
    members = [(f"{WS}/{p.relative_to(export)}", p.read_bytes()) for p in sorted(export.rglob("*.json"))]
    write_zip(z, members + [(f"{WS}/enrique/2016-04-01.json", 10 << 30)])
    assert z.stat().st_size < 20 << 20
    return z


SLACK_READ = """
from pipelines.sources import get_reader, Quarantined
r = get_reader("slack")
out = [o for u in r.units([{path!r}]) for o in r.read_unit(u)]
q = [o for o in out if isinstance(o, Quarantined)]
report(records=len(out), messages=sum(isinstance(o, dict) for o in out),
       quarantined=[(o.source_uri, o.reason, o.detail) for o in q])
"""


def test_a_10_gib_slack_zip_member_is_quarantined_without_inflating_it(slack_bomb):
    res = run_limited(SLACK_READ.format(path=str(slack_bomb)))
    # All 158 records of the real export are read; the bomb is one too_large row.
    assert (res["records"], res["messages"]) == (159, 147)
    ((uri, reason, detail),) = res["quarantined"]
    assert uri.endswith("enrique/2016-04-01.json::" + str(slack_bomb)) and reason == "too_large"
    assert "10737418240 bytes" in detail and "SOCIALCORPUS_SLACK_MAX_MEMBER_BYTES" in detail
    assert res["maxrss_mib"] < 256  # an idle import is about 66 MiB


def test_a_slack_zip_whose_users_json_is_a_bomb_is_a_clear_error(real, tmp_path):
    export = real / "slack" / WS
    z = tmp_path / "ws.zip"
    members = [(str(p.relative_to(export)), p.read_bytes()) for p in sorted(export.rglob("*.json"))
               if p.name != "users.json"]
    write_zip(z, members + [("users.json", 4 << 30)])
    code = SLACK_READ.format(path=str(z)).replace("out = [", "try:\n    out = [").replace(
        "\nq = [", "\nexcept Exception as e:\n    report(error=f'{type(e).__name__}: {e}'); sys.exit(0)\nq = [")
    res = run_limited(code)
    assert res["error"].startswith(f"SourceError: zip://users.json::{z}: the member inflates to 4294967296 bytes")
    assert res["maxrss_mib"] < 256  # an idle import is about 66 MiB


# --- HTML nested far deeper than any real quote chain -------------------------------------------

def test_deeply_nested_html_renders_in_linear_memory():
    # 2.5 MB of nested <blockquote>s: the old renderer's output grew with depth squared
    # (390 KB took 1.9 GB, 780 KB was a MemoryError).
    res = run_limited("""
import time
from pipelines.core.text import html_to_text, MAX_QUOTE_DEPTH
depth = 100_000
html = "<blockquote><p>q</p>" * depth + "</blockquote>" * depth
t = time.time()
text = html_to_text(html)
lines = text.split("\\n\\n")
report(html=len(html), text=len(text), lines=len(lines), deepest=lines[-1], first=lines[0], cap=MAX_QUOTE_DEPTH,
       seconds=time.time() - t)
""")
    assert res["lines"] == 100_000 and res["first"] == "> q"
    assert res["deepest"] == "> " * res["cap"] + "q"
    assert res["text"] < 25 * 100_000  # about 2*cap+3 characters per level: linear, not quadratic
    assert res["maxrss_mib"] < 256


# --- a Telegram export of a few hundred MB ------------------------------------------------------

def _write_big_telegram(path: Path, target_bytes: int) -> int:
    """A single-chat result.json of about ``target_bytes``, written message by message."""
    import orjson

    pad = "lorem ipsum dolor sit amet " * 80
    n = size = 0
    with open(path, "wb", buffering=1 << 20) as f:
        f.write(b'{"name": "big", "type": "public_supergroup", "id": 77, "messages": [')
        while size < target_bytes:
            b = (b"," if n else b"") + orjson.dumps({
                "id": n, "type": "message", "date": "2021-01-01T10:00:00", "date_unixtime": str(1609495200 + n),
                "from": "member", "from_id": f"user{n % 50}", "text": f"{n} {pad}"})
            f.write(b)
            size += len(b)
            n += 1
        f.write(b"]}")
    return n


@pytest.mark.slow
def test_a_large_telegram_export_is_streamed_in_bounded_memory(tmp_path):
    f = tmp_path / "result.json"
    n = _write_big_telegram(f, 256 << 20)
    res = run_limited(f"""
from pipelines.sources import get_reader
r = get_reader("telegram")
last = None
count = messages = 0
for o in r.read_unit([{str(f)!r}]):
    count += 1
    if isinstance(o, dict):
        messages += 1
        last = o
report(records=count, messages=messages, last_id=last["message_id"], last_record=last["source_record"])
""")
    assert (res["records"], res["messages"]) == (n, n)
    assert (res["last_id"], res["last_record"]) == (f"telegram:77:{n - 1}", n - 1)
    # Parsed whole, the 256 MiB file alone would be resident, and its objects several times over.
    assert res["maxrss_mib"] < 256
