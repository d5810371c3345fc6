"""The built site as a reader sees it: headless Chromium, no network, pages served locally.

The site is built as CI builds it (``tests/sitebuild.py``: ``mkdocs build --strict``, the
notebooks with the outputs of their one execution) and served by a ``http.server`` on
127.0.0.1 (search needs HTTP: its index is fetched by a web worker, which ``file://``
forbids). Nothing is fetched from outside the machine: a page that still loaded MathJax
from a CDN would show raw TeX here, as it does in a lab without internet.

* A derivation page (LayerNorm) and an API page show typeset math (MathJax's
  ``mjx-container``) and no raw ``\\(``, ``\\[`` or ``$$`` in their text.
* A notebook page shows its figures (``<img src="data:image/png...">`` in the DOM), and
  every notebook that draws one publishes it.
* The search box finds ``layernorm_backward``.

Chromium runs as ``--headless --no-sandbox --disable-gpu`` (root in CI). Pages are read
with ``--dump-dom --virtual-time-budget=10000`` (the DOM after scripts ran). The search
check drives the browser over the DevTools protocol on a pipe instead: Material's search
runs in a web worker, and virtual time does not wait for workers (the dump shows
"Initializing search"), so that check waits in real time, up to a minute.

Skipped, with the reason, where Chromium is missing (Debian: ``apt-get install chromium``;
``.ci/run`` installs it, so CI always runs these checks).
"""
from __future__ import annotations

import functools
import html.parser
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import sitebuild  # tests/sitebuild.py

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian: apt-get update && apt-get install -y chromium; "
           ".ci/run installs it, so CI runs these checks)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-extensions", "--disable-background-networking"]

pytestmark = pytest.mark.skipif(
    shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists(),
    reason="mkdocs is not installed (pip install -e '.[docs]')")


# ---------------------------------------------------------------- serving and reading pages

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def serve():
    """serve(root) -> base URL of a local HTTP server on 127.0.0.1 for that folder."""
    servers = []

    def start(root: Path) -> str:
        handler = functools.partial(_Quiet, directory=str(root))
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def dump_dom(url: str, tmp_path: Path) -> str:
    """The DOM of ``url`` after its scripts ran (10 s of virtual time)."""
    profile = tmp_path / f"profile-{time.monotonic_ns()}"
    proc = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "<html" in proc.stdout, \
        f"chromium --dump-dom {url} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
    return proc.stdout


class _Text(html.parser.HTMLParser):
    """The text a reader sees, outside code, scripts and typeset math."""
    SKIP = {"script", "style", "pre", "code", "textarea", "mjx-container", "noscript"}

    def __init__(self):
        super().__init__()
        self.depth = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.depth += 1

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if not self.depth:
            self.parts.append(data)


def visible_text(dom: str) -> str:
    p = _Text()
    p.feed(dom)
    return "".join(p.parts)


# ---------------------------------------------------------------- math

@needs_chromium
@pytest.mark.parametrize("page,at_least", [("layers/layernorm/", 10), ("api/layers/", 3)])
def test_math_is_typeset_offline(page, at_least, serve, tmp_path):
    site = sitebuild.build_site(with_outputs=False).root
    dom = dump_dom(serve(site) + page, tmp_path)
    typeset = dom.count("<mjx-container")
    assert typeset >= at_least, \
        f"{page}: {typeset} typeset formulas (mjx-container), expected at least {at_least}: is MathJax shipped with the site?"
    text = visible_text(dom)
    raw = sorted({m for m in re.findall(r"\\\(|\\\[|\$\$", text)})
    assert not raw, f"{page}: raw TeX delimiters {raw} left in the page text: {text[text.find(raw[0]) - 80:][:200]!r}"


# ---------------------------------------------------------------- notebook figures

def _draws(path: Path) -> bool:
    return "plt.show()" in path.read_text(encoding="utf-8")


@pytest.mark.notebook
def test_notebook_pages_publish_their_figures():
    """Every notebook that draws a figure publishes it (outputs of the one execution)."""
    site = sitebuild.build_site(with_outputs=True).root
    failed = {p.stem: r.error.splitlines()[0] for p in sitebuild.NOTEBOOKS
              if (r := sitebuild.execute_notebook(p)).error}
    assert not failed, f"notebooks that failed to execute (see tests/test_notebooks.py): {failed}"
    missing = [p.stem for p in sitebuild.NOTEBOOKS if _draws(p) and
               'src="data:image/png' not in (site / "notebooks" / p.stem / "index.html").read_text(encoding="utf-8")]
    assert not missing, f"notebook pages without their figures: {missing}"


@needs_chromium
@pytest.mark.notebook
def test_notebook_page_shows_a_figure(serve, tmp_path):
    site = sitebuild.build_site(with_outputs=True).root
    page = "notebooks/04_attention/"
    assert sitebuild.execute_notebook(sitebuild.NOTEBOOK_DIR / "04_attention.py").error == "", \
        "notebook 04 failed to execute (see tests/test_notebooks.py)"
    dom = dump_dom(serve(site) + page, tmp_path)
    figures = re.findall(r'<img\b[^>]*\bsrc="data:image/png;base64,[A-Za-z0-9+/=]{1000,}', dom)
    assert figures, f"{page} shows no figure (no <img> with a PNG in the rendered page)"
    assert "In&nbsp;[&nbsp;]" not in dom and "In [ ]:" not in visible_text(dom), \
        f"{page} shows unexecuted cells (In [ ]:)"


# ---------------------------------------------------------------- search

class DevTools:
    """Just enough of the DevTools protocol over --remote-debugging-pipe (fds 3 and 4)."""

    def __init__(self, profile: Path):
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def fds():  # in the child: the browser reads fd 3 and writes fd 4
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.session = None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    assert "error" not in reply, f"{method}: {reply['error']}"
                    return reply["result"]
            chunk = os.read(self._r, 1 << 16)
            assert chunk, f"chromium closed the DevTools pipe during {method}"
            self._buf += chunk

    def evaluate(self, expression):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def close(self):
        self.proc.kill()
        self.proc.wait(timeout=30)
        os.close(self._r)
        os.close(self._w)


@needs_chromium
def test_search_finds_layernorm_backward(serve, tmp_path):
    site = sitebuild.build_site(with_outputs=False).root
    url = serve(site) + "?q=layernorm_backward"      # Material opens the search with ?q=
    browser = DevTools(tmp_path / "profile")
    try:
        browser.call("Page.navigate", url=url)
        results, deadline = [], time.monotonic() + 60
        while time.monotonic() < deadline:
            results = browser.evaluate(
                "Array.from(document.querySelectorAll('.md-search-result__item'), e => e.textContent)") or []
            if results:
                break
            time.sleep(0.5)
        query = browser.evaluate("document.querySelector('.md-search__input').value")
        meta = browser.evaluate("document.querySelector('.md-search-result__meta').textContent.trim()")
    finally:
        browser.close()
    assert query == "layernorm_backward", f"the search box holds {query!r}"
    assert results, f"the search found nothing for layernorm_backward within 60 s (it says {meta!r})"
    assert any("layernorm_backward" in r for r in results), \
        f"no search result mentions layernorm_backward: {[r[:80] for r in results]}"
