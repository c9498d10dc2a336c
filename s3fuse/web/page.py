"""The status page as one self-contained HTML document (inline CSS and SVG, no script), and its JSON twin.

The page reloads itself every few seconds (`<meta http-equiv="refresh">`), so it works in any browser, in a
headless screenshot and through `curl`.
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import json
import time
from collections.abc import Sequence

from s3fuse.web.status import Sample, Status

REFRESH_SECONDS = 5
CHART_WIDTH = 520
CHART_HEIGHT = 140

STYLE = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       color: #1d2733; background: #f3f5f8; }
header { background: #1f3a5f; color: #fff; padding: 14px 24px; display: flex; align-items: baseline; gap: 24px; }
header h1 { font-size: 20px; margin: 0; }
header span { opacity: .85; }
main { padding: 16px 24px; display: grid; grid-template-columns: repeat(auto-fit, minmax(540px, 1fr)); gap: 16px; }
section { background: #fff; border-radius: 8px; padding: 12px 16px; box-shadow: 0 1px 3px rgba(0,0,0,.12); }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 15px; margin: 0 0 8px; color: #1f3a5f; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e7ed; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.big { font-size: 22px; font-weight: 600; }
.tiles { display: flex; gap: 24px; flex-wrap: wrap; }
.tile small { display: block; color: #5b6b7c; }
.ok { color: #1a7f37; } .warn { color: #9a6700; } .bad { color: #cf222e; }
.empty { color: #5b6b7c; font-style: italic; }
tr.mount td { background: #eaf5ec; }
tr.mount.stopping td { background: #fff4e0; }
.bar { background: #e3e7ed; border-radius: 4px; height: 10px; width: 100%; }
.bar div { background: #2f81f7; border-radius: 4px; height: 10px; }
svg text { font: 11px system-ui, "DejaVu Sans", sans-serif; fill: #5b6b7c; }
footer { padding: 0 24px 16px; color: #5b6b7c; }
"""


def size_text(value: float) -> str:
    """1536 -> "1.5 KiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def duration_text(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def polyline(points: Sequence[tuple[float, float]], t0: float, t1: float, top: float, color: str) -> str:
    if not points:
        return ""
    span = max(1e-3, t1 - t0)
    coords = " ".join(f"{40 + (t - t0) / span * (CHART_WIDTH - 50):.1f},"
                      f"{CHART_HEIGHT - 20 - (v / top if top else 0) * (CHART_HEIGHT - 30):.1f}" for t, v in points)
    return f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>'


def chart(title: str, series: Sequence[tuple[str, str, Sequence[tuple[float, float]]]], unit: str) -> str:
    """A small line chart: series of (label, color, [(time, value)]) over the same time axis."""
    times = [t for _, _, points in series for t, _ in points]
    values = [v for _, _, points in series for _, v in points]
    top = max(values, default=0.0) * 1.1 or 1.0
    t0, t1 = (min(times), max(times)) if times else (0.0, 1.0)
    body = [f'<line x1="40" y1="{CHART_HEIGHT - 20}" x2="{CHART_WIDTH - 10}" y2="{CHART_HEIGHT - 20}" '
            f'stroke="#c6ced8"/>',
            f'<line x1="40" y1="10" x2="40" y2="{CHART_HEIGHT - 20}" stroke="#c6ced8"/>',
            f'<text x="4" y="18">{e(size_text(top) + unit)}</text>',
            f'<text x="4" y="{CHART_HEIGHT - 22}">0</text>',
            f'<text x="40" y="{CHART_HEIGHT - 4}">-{e(duration_text(t1 - t0))}</text>',
            f'<text x="{CHART_WIDTH - 40}" y="{CHART_HEIGHT - 4}">now</text>']
    legend_x = 60
    for label, color, points in series:
        body.append(polyline(points, t0, t1, top, color))
        body.append(f'<rect x="{legend_x}" y="6" width="10" height="10" fill="{color}"/>'
                    f'<text x="{legend_x + 14}" y="15">{e(label)}</text>')
        legend_x += 14 + 8 * len(label) + 16
    if not times:
        body.append(f'<text x="{CHART_WIDTH // 2 - 60}" y="{CHART_HEIGHT // 2}">collecting samples...</text>')
    return (f'<svg role="img" aria-label="{e(title)}" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" '
            f'viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}">{"".join(body)}</svg>')


def rates(samples: Sequence[Sample], field: str) -> list[tuple[float, float]]:
    return [(b.when, max(0.0, (getattr(b, field) - getattr(a, field)) / max(1e-3, b.when - a.when)))
            for a, b in itertools.pairwise(samples)]


def render(status: Status) -> str:
    """The whole page."""
    ratio = status.hit_ratio
    ratio_text = "no reads yet" if ratio is None else f"{ratio:.1%}"
    used = status.cache_bytes / status.cache_limit if status.cache_limit else 0.0
    mounts = "".join(
        f'<tr class="{"mount" if m.state == "serving" else "mount stopping"}"><td>{e(m.mountpoint)}</td>'
        f'<td>{e(m.source)}</td><td>{e(m.endpoint)}</td>'
        f'<td>{"read-only" if m.readonly else "read-write"}</td><td class="num">{m.open_files}</td>'
        f'<td class="{"ok" if m.state == "serving" else "warn"}">{e(m.state)}</td></tr>' for m in status.mounts)
    operations = "".join(
        f'<tr><td>{e(name)}</td><td class="num">{s.count}</td><td class="num">{s.client_errors}</td>'
        f'<td class="num {"bad" if s.server_errors else ""}">{s.server_errors}</td>'
        f'<td class="num">{s.mean_ms:.1f} ms</td></tr>'
        for name, s in sorted(status.operations.items()))
    uploads = "".join(f'<tr><td>{e(u.path)}</td><td class="num">{e(size_text(u.size))}</td><td>{e(u.state)}</td></tr>'
                      for u in status.uploads)
    errors = "".join(
        f'<tr><td>{e(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.when)))}</td>'
        f'<td class="{"bad" if r.level in ("ERROR", "CRITICAL") else "warn"}">{e(r.level)}</td>'
        f'<td>{e(r.logger)}</td><td style="white-space: normal">{e(r.message)}</td></tr>'
        for r in reversed(status.errors))
    samples = status.history
    cache_chart = chart("cache use", [("disk cache", "#2f81f7", [(s.when, float(s.cache_bytes)) for s in samples])],
                        "")
    traffic_chart = chart("throughput", [("read", "#1a7f37", rates(samples, "read_bytes")),
                                         ("written", "#cf222e", rates(samples, "written_bytes")),
                                         ("uploaded", "#8250df", rates(samples, "uploaded_bytes"))], "/s")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>s3fuse status</title><style>{STYLE}</style></head>
<body>
<header><h1>s3fuse</h1><span>version {e(status.version)}</span><span>pid {status.pid}</span>
<span>up {e(duration_text(status.now - status.started))}</span>
<span>{e(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status.now)))}</span></header>
<main>
<section class="wide"><h2>Mounts</h2>
<table id="mounts"><tr><th>mount point</th><th>source</th><th>endpoint</th><th>mode</th><th class="num">open files</th>
<th>state</th></tr>{mounts or '<tr><td class="empty" colspan="6">no mounts</td></tr>'}</table></section>
<section><h2>Cache</h2><div class="tiles">
<div class="tile"><small>disk cache</small><span class="big">{e(size_text(status.cache_bytes))}</span>
 of {e(size_text(status.cache_limit))}</div>
<div class="tile"><small>hit ratio</small><span class="big" id="hit-ratio">{e(ratio_text)}</span></div>
<div class="tile"><small>hits / misses</small><span class="big">{status.hits} / {status.misses}</span></div>
<div class="tile"><small>in memory</small><span class="big">{e(size_text(status.memory_bytes))}</span></div>
</div><div class="bar" title="disk cache use"><div style="width: {min(100.0, used * 100):.1f}%"></div></div>
{cache_chart}</section>
<section><h2>Traffic</h2><div class="tiles">
<div class="tile"><small>read by applications</small><span class="big" id="read-bytes">
{e(size_text(status.read_bytes))}</span></div>
<div class="tile"><small>written by applications</small><span class="big" id="written-bytes">
{e(size_text(status.written_bytes))}</span></div>
<div class="tile"><small>uploaded to S3</small><span class="big">{e(size_text(status.uploaded_bytes))}</span></div>
<div class="tile"><small>downloaded from S3</small><span class="big">
{e(size_text(status.downloaded_bytes))}</span></div>
<div class="tile"><small>failed uploads</small><span class="big {"bad" if status.upload_failures else ""}">
{status.upload_failures:.0f}</span></div>
</div>{traffic_chart}</section>
<section><h2>Uploads in flight</h2>
<table id="uploads"><tr><th>object</th><th class="num">size</th><th>state</th></tr>
{uploads or '<tr><td class="empty" colspan="3">none: every written byte is in S3</td></tr>'}</table></section>
<section><h2>S3 requests</h2>
<table id="operations"><tr><th>operation</th><th class="num">requests</th><th class="num">4xx</th>
<th class="num">5xx / no answer</th><th class="num">mean latency</th></tr>
{operations or '<tr><td class="empty" colspan="5">none yet</td></tr>'}</table>
</section>
<section class="wide"><h2>Last errors and warnings</h2>
<table id="errors"><tr><th>time</th><th>level</th><th>logger</th><th>message</th></tr>
{errors or '<tr><td class="empty" colspan="4">none</td></tr>'}</table></section>
</main>
<footer>Refreshes every {REFRESH_SECONDS} s. <a href="/metrics">/metrics</a> (Prometheus) ·
<a href="/api/status">/api/status</a> (JSON)</footer>
</body></html>
"""


def as_json(status: Status) -> bytes:
    data = dataclasses.asdict(status)
    data["hit_ratio"] = status.hit_ratio
    return json.dumps(data, indent=1, default=str).encode()
