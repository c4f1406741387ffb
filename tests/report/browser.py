"""A real headless Chromium (Debian's package; as root with --no-sandbox) opening a report page: a wrapper page
loads it in a frame and records, after load, whether every picture decoded, what the page fetched, and whether
the worst picture's panel is on screen; Chromium's console log is captured; a screenshot of the page is taken."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

WRAPPER = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" src="{src}" style="width:1250px;height:20000px;border:0"></iframe>
<pre id="result">pending</pre>
<script>
document.getElementById('f').addEventListener('load', function () {{
  var d = this.contentDocument, w = this.contentWindow;
  var imgs = Array.prototype.slice.call(d.images);
  var broken = imgs.filter(function (i) {{ return !(i.complete && i.naturalWidth > 0); }}).length;
  var fetched = w.performance.getEntriesByType('resource').map(function (e) {{ return e.name; }})
      .filter(function (n) {{ return n.indexOf('data:') !== 0; }});
  var panel = d.querySelector('.worst img');
  var rect = panel ? panel.getBoundingClientRect() : null;
  document.getElementById('result').textContent = JSON.stringify({{
    images: imgs.length, broken: broken, fetched: fetched, title: d.title,
    panel: panel ? {{w: panel.naturalWidth, top: rect.top, height: rect.height}} : null}});
}});
</script></body></html>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--enable-logging=stderr", "--v=0", *args], capture_output=True, text=True,
                          timeout=timeout)


def open_page(page: Path, workdir: Path) -> dict:
    """{"images", "broken", "fetched", "panel", "console": [console lines], "screenshot": Path}."""
    wrapper = workdir / "wrapper.html"
    wrapper.write_text(WRAPPER.format(src=page.resolve().as_uri()))
    dom = _run(["--allow-file-access-from-files", "--virtual-time-budget=10000", "--dump-dom", wrapper.as_uri()])
    found = re.search(r'<pre id="result">(.*?)</pre>', dom.stdout, re.S)
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")) if found and \
        found.group(1) != "pending" else {"error": dom.stdout[-500:] + dom.stderr[-2000:]}
    shot = workdir / f"{page.stem}.png"
    taken = _run(["--window-size=1250,1600", f"--screenshot={shot}", page.resolve().as_uri()])
    result["console"] = [line for line in (dom.stderr + taken.stderr).splitlines() if "CONSOLE" in line]
    result["screenshot"] = shot
    return result
