"""The HTML viewer: what the file holds, and what a real headless browser
(Debian's `chromium`, installed by .ci/run) makes of it.

The browser checks read the DOM chromium dumps after the page ran: the page
writes every uncaught error into `<pre id="errors">` and counts them in
`<body data-errors>`, sets `data-ready="1"` once it has drawn, and with
`#probe` in the URL puts checksums of its two canvases' pixels into
`data-heatmap-checksum` / `data-tokens-checksum`. The URL hash selects the
view, kind, layer, head and hovered token, as a reader's clicks would.
"""

import base64
import os
import re
import shutil
import subprocess
import tempfile
import time
import zlib

import numpy as np
import pytest

from keras_attn.interpret.viewer import encode_matrix, render_viewer, write_attention_viewer
from tests.interpret._fakes import self_attention_maps, translation_maps

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _browser():
    found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI must run the browser test, and no chromium is installed "
                        "(.ci/run installs it with apt-get)")
        pytest.skip("no headless browser here (apt-get install chromium); CI runs this test")
    return found


def _rendered(path, hash_="", budget_ms=20_000):
    """Loads `path#hash_` in headless chromium; returns (body attributes,
    errors text, seconds)."""
    browser = _browser()
    with tempfile.TemporaryDirectory() as profile:
        start = time.perf_counter()
        result = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", "--window-size=1100,800",
             f"--virtual-time-budget={budget_ms}", "--dump-dom",
             f"file://{os.path.abspath(path)}#{hash_}"],
            capture_output=True, text=True, timeout=120,
        )
        seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", result.stdout)
    assert body, result.stdout[:2000]
    attributes = dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1)))
    errors = re.search(r'<pre id="errors">(.*?)</pre>', result.stdout, re.S).group(1)
    return attributes, errors, seconds


def test_page_is_offline_and_embeds_tokens_and_matrices():
    maps = translation_maps(["<b>", "\u00fcber", "[EOS]"], ["[BOS]", "over", "</script>"])
    page = render_viewer(maps, views={"rollout": {"encoder": np.eye(3)}},
                         token_scores={"ig": {"source": [0.1, -0.3, 0.2]}})
    assert not re.search(r"https?://", page)
    assert "<link" not in page and "src=" not in page  # nothing loaded from elsewhere
    for token in ("\\u003cb>", "\u00fcber", "\\u003c/script>"):
        assert token in page
    assert page.count("</script>") == 3  # the error catcher, the data, the viewer


def test_matrix_encoding_round_trip():
    weights = np.array([[0.001, 0.25, 0.749], [1.0, 0.0, 0.0]])
    encoded = encode_matrix(weights)
    codes = np.frombuffer(zlib.decompress(base64.b64decode(encoded["d"])), "uint8")
    decoded = (codes / 255.0) ** 2 * encoded["s"]  # what viewer.js's lookup table does
    np.testing.assert_allclose(decoded.reshape(2, 3), weights, atol=0.004)
    assert codes[0] == 8  # sqrt(0.001) * 255: small weights stay visible
    signed = encode_matrix(np.array([[-2.0, 0.5]]))
    codes = np.frombuffer(zlib.decompress(base64.b64decode(signed["d"])), "uint8")
    assert signed["n"] == 1 and codes.tolist() == [1, 128 + 64]


def test_bad_views_and_scores_are_named():
    maps = self_attention_maps(list("abc"))
    with pytest.raises(ValueError, match=r"views\['rollout'\]\['encoder'\].*\(3, 3\)"):
        render_viewer(maps, views={"rollout": {"encoder": np.ones((3, 4))}})
    with pytest.raises(ValueError, match="cross"):
        render_viewer(maps, views={"rollout": {"cross": np.ones((3, 3))}})
    with pytest.raises(ValueError, match=r"token_scores\['ig'\]\['tokens'\]"):
        render_viewer(maps, token_scores={"ig": {"tokens": [1.0, 2.0]}})
    with pytest.raises(ValueError, match="attention"):
        render_viewer(maps, views={"attention": {"encoder": np.eye(3)}})


def test_browser_loads_without_errors_and_another_head_draws_differently(tmp_path):
    path = tmp_path / "translation.html"
    maps = translation_maps([f"s{i}" for i in range(7)], [f"t{i}" for i in range(5)])
    write_attention_viewer(path, maps, views={"rollout": {"encoder": np.eye(7)}},
                           token_scores={"ig": {"source": np.linspace(-1, 1, 7)}})
    first, errors, _ = _rendered(path, "probe&kind=cross&layer=0&head=0&query=2")
    assert errors == "" and first["errors"] == "0"
    assert first["ready"] == "1"
    assert (first["kind"], first["layer"], first["head"], first["focus"]) == (
        "cross", "0", "0", "query:2"
    )
    other_head, errors, _ = _rendered(path, "probe&kind=cross&layer=0&head=1&query=2")
    assert errors == "" and other_head["head"] == "1"
    assert other_head["heatmap-checksum"] != first["heatmap-checksum"]
    assert other_head["tokens-checksum"] != first["tokens-checksum"]
    # Hovering another token moves the lines, not the heatmap's cells.
    other_query, _, _ = _rendered(path, "probe&kind=cross&layer=0&head=0&query=4")
    assert other_query["tokens-checksum"] != first["tokens-checksum"]
    rollout, errors, _ = _rendered(path, "probe&view=rollout&scores=ig")
    assert errors == "" and (rollout["view"], rollout["kind"]) == ("rollout", "encoder")


def test_browser_renders_a_thousand_token_page(tmp_path):
    # Under --virtual-time-budget the page's own clock is virtual, so time is
    # taken outside: the wall time of a 1,000-token page (4 layers x 4 heads,
    # ~20 MB) against that of a 3-token page, which is the browser's start-up.
    small, long = tmp_path / "small.html", tmp_path / "long.html"
    write_attention_viewer(small, self_attention_maps(list("abc"), layers=4, heads=4))
    maps = self_attention_maps([f"w{i}" for i in range(1000)], layers=4, heads=4)
    write_attention_viewer(long, maps)
    _, errors, start_up = _rendered(small, "probe")
    assert errors == ""
    attributes, errors, seconds = _rendered(long, "probe&layer=3&head=all&query=500")
    assert errors == "" and attributes["ready"] == "1"
    assert attributes["focus"] == "query:500" and attributes["head"] == "all"
    # A guard against a page that hangs, not a speed target (that is measured
    # by hand: about 1 s over the browser's start-up on 2 idle cores).
    assert seconds - start_up < 60.0, (seconds, start_up)
