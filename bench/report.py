"""The report: a text table (s3fuse beside the direct client, then the S3 requests of each), a JSON file and a
PNG bar chart, all under bench/results/ (gitignored): latest.txt, latest.json, latest.png, history/*.json.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

# the shared harness's metric for each of our rows, so the chart can put the peers beside us
PEER_METRICS = {
    "seq_cold": "W1 cold read MB/s", "seq_warm": "W1 warm read MB/s", "rand4k": "W5 randread 4KiB IOPS",
    "ls": "W3 ls -l 2000 objs s", "find": "W3 find 200x10 tree s",
    "small_create": "W4 create 500x4KiB files/s", "small_readback": "W4 read 500x4KiB files/s",
    "write_default": "W2 write+close MB/s",
    "close_default": "W2 close() s", "rename": "W6 rename dir(200) s",
}
PEER_LABELS = {"s3fs": "s3fs-fuse", "rclone-full": "rclone (vfs full)", "rclone-off": "rclone (vfs off)",
               "project": "s3fuse via shared harness"}


def number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def ratio(row: dict[str, Any]) -> str:
    """Speed of s3fuse relative to the direct client: >1 means s3fuse was faster."""
    mine, theirs = row["s3fuse"], row["direct"]
    if not mine or not theirs:
        return "-"
    return f"{(theirs / mine if row['lower_better'] else mine / theirs):.2f}"


def ops_text(ops: dict[str, int]) -> str:
    return ", ".join(f"{op} {count}" for op, count in ops.items()) or "-"


def size_text(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1e5 else f"{count / 1e3:.0f} kB" if count else "-"


def grid(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def targets(rows: dict[str, dict[str, Any]]) -> list[str]:
    """The issue's read targets, as ratios of figures taken in this run."""
    def figure(key: str, side: str) -> float | None:
        row = rows.get(key)
        return row[side] if row and not row[f"{side}_error"] else None

    lines = []
    cold, burst, ranges = figure("seq_cold", "s3fuse"), figure("lim_burst", "direct"), figure("lim_ranges", "direct")
    best = max((value for value in (burst, ranges) if value), default=None)
    if cold and best:
        lines.append(f"- target cold read >= 0.9 x the direct client's best parallel ranged GETs ({best:.0f} MB/s): "
                     f"{cold / best:.2f} x")
    lines += cpu_budget(rows)
    warm, memfs = figure("seq_warm", "s3fuse"), figure("lim_memfs", "direct")
    if warm and memfs:
        disk = figure("lim_disk", "direct")
        bound = f" (the cache's disk gives its files back at {disk:.0f} MB/s)" if disk else ""
        lines.append(f"- target warm read >= 1000 MB/s or >= 0.8 x a trivial in-memory pyfuse3 fs ({memfs:.0f} MB/s): "
                     f"{warm:.0f} MB/s, {warm / memfs:.2f} x{bound}")
        ram = figure("seq_warm_ram", "s3fuse")
        if ram:
            lines.append(f"  the same with the block cache on tmpfs: {ram:.0f} MB/s, {ram / memfs:.2f} x")
    cold_dio, warm_dio = figure("seq_cold_dio", "s3fuse"), figure("seq_warm_dio", "s3fuse")
    if cold_dio and best and warm_dio and memfs:
        lines.append(f"  with -o direct_io (opt-in): cold {cold_dio:.0f} MB/s, {cold_dio / best:.2f} x; "
                     f"warm {warm_dio:.0f} MB/s, {warm_dio / memfs:.2f} x")
    rss = figure("rss", "s3fuse")
    if rss:
        lines.append(f"- target RSS < 512 MiB while reading: peak {rss:.0f} MiB")
    return lines


def cpu_budget(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Why the cold ratio is what it is when the server shares the cores: the whole machine's CPU seconds per GiB
    of the direct client's ranged read, of s3fuse's cold read, and of memfs (FUSE's own cost of moving a GiB from
    a daemon to a reader). With every core busy, speed goes as the inverse of CPU per GiB, so a layer that fetched
    like the direct client and did nothing but pass the bytes through FUSE would reach about D / (D + M)."""
    def cpu(key: str, side: str) -> float | None:
        row = rows.get(key)
        if row is None or row[f"{side}_error"]:
            return None
        value = row["extra"].get("direct_cpu_s_per_gib" if side == "direct" else "cpu_s_per_gib")
        return float(value) if value else None

    ranges, cold, memfs = cpu("lim_ranges", "direct"), cpu("seq_cold", "s3fuse"), cpu("lim_memfs", "direct")
    if not (ranges and cold and memfs):
        return []
    busy = cold * rows["seq_cold"]["s3fuse"] * 1e6 / (1 << 30) / max(1, os.cpu_count() or 1)
    return [f"  CPU seconds per GiB, whole machine (/proc/stat: server, proxy, client or mount, reader): direct "
            f"ranges {ranges:.2f}, s3fuse cold {cold:.2f} ({busy:.0%} of the cores busy), memfs {memfs:.2f}; so a "
            f"layer that fetched like the direct client, cached nothing and only added memfs's FUSE transfer would "
            f"reach about {ranges / (ranges + memfs):.2f} x"]


def tables(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    values = []
    for row in rows:
        mine = number(row["s3fuse"], row["unit"]) if not row["s3fuse_error"] else f"n/a (error: {row['s3fuse_error']})"
        if len(mine) > 90:
            mine = mine[:87] + "..."
        if row["key"].startswith("lim_"):
            mine = ""
        theirs = number(row["direct"], row["unit"]) if not row["direct_error"] else f"n/a ({row['direct_error']})"
        values.append([row["label"], row["unit"], mine, theirs[:40], ratio(row), row["direct_label"]])
    requests = []
    for row in rows:
        if row["key"].startswith(("close_", "lim_")):
            continue
        requests.append([row["label"], ops_text(row["s3fuse_ops"]), size_text(row["s3fuse_bytes"]),
                         ops_text(row["direct_ops"]), size_text(row["direct_bytes"])])
    notes = [f"- {row['label'].strip()}: {row['note']}" for row in rows if row["note"]]
    notes += targets({row["key"]: row for row in rows})
    for row in rows:
        extra = row["extra"]
        if "lat_ms_p50" in extra:
            notes.append(f"- {row['label']}: {extra['tool']}, latency p50 {extra['lat_ms_p50']:.2f} ms, "
                         f"p99 {extra['lat_ms_p99']:.2f} ms")
    sizes = meta["sizes"]
    head = (f"s3fuse bench  {meta['when']}  commit {meta['commit']}  backend {meta['backend']}  "
            f"{meta['cpus']} CPUs  load before {meta['load_before']:.1f}  run {meta.get('elapsed_s', 0):.0f} s\n"
            f"sizes: {', '.join(f'{k}={v}' for k, v in sizes.items())}; block "
            f"{meta.get('mount_options', {}).get('alluxio.user.client.cache.page.size', '?')}; "
            "every request goes through a counting proxy on loopback (the mount's and the direct client's alike)")
    return "\n\n".join([
        head,
        grid(["workload", "unit", "s3fuse", "direct", "s3fuse/direct", "direct client does"], values)
        + "\ns3fuse/direct: speed relative to the direct client (>1: s3fuse faster; time rows: direct_time/time)",
        "S3 requests per workload (counted at the proxy; bytes = request + response bytes on the wire)\n"
        + grid(["workload", "s3fuse requests", "s3fuse bytes", "direct requests", "direct bytes"], requests),
        *(["notes:\n" + "\n".join(notes)] if notes else []),
    ])


def chart(path: Path, meta: dict[str, Any], rows: list[dict[str, Any]], peers: dict[str, Any] | None) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "(no chart: matplotlib is not installed in the venv)"
    shown = [row for row in rows if not row["key"].startswith("lim_")]
    peer_targets = [t for t in (peers or {}).get("targets", []) if t in PEER_LABELS]
    series = ["s3fuse", "direct client", *(PEER_LABELS[t] for t in peer_targets)]
    colours = ["#1f77b4", "#7f7f7f", "#ff7f0e", "#2ca02c", "#9467bd", "#17becf"]
    columns = 4
    lines = -(-len(shown) // columns)
    figure, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.2 * lines))
    flat = list(axes.flat)
    for axis, row in zip(flat, shown, strict=False):
        values: list[float | None] = [row["s3fuse"], row["direct"]]
        for target in peer_targets:
            raw = (peers or {}).get("results", {}).get(PEER_METRICS.get(row["key"], ""), {}).get(target)
            values.append(raw if isinstance(raw, int | float) and not isinstance(raw, bool) else None)
        for index, value in enumerate(values):
            if value is None:
                missing = "-" if index == 1 and not row["direct_label"] else "n/a"  # close(): no direct twin
                axis.text(index, 0.02, missing, ha="center", va="bottom", fontsize=8,
                          transform=axis.get_xaxis_transform())
            else:
                axis.bar(index, value, color=colours[index % len(colours)])
                axis.text(index, value, number(value, row["unit"]), ha="center", va="bottom", fontsize=7)
        shown_values = [v for v in values if v]
        if shown_values and max(shown_values) > 50 * min(shown_values):
            axis.set_yscale("log")  # e.g. page-cache-served random reads next to S3-served ones
        axis.set_xticks(range(len(series)), series, rotation=30, ha="right", fontsize=7)
        axis.set_xlim(-0.6, len(series) - 0.4)
        better = "lower is better" if row["lower_better"] else "higher is better"
        axis.set_title(f"{row['label'].strip()}\n{row['unit']}, {better}", fontsize=8)
        axis.tick_params(axis="y", labelsize=7)
    for axis in flat[len(shown):]:
        axis.axis("off")
    figure.suptitle(f"s3fuse vs the direct S3 client{' and peers' if peer_targets else ''} — backend "
                    f"{meta['backend']}, {meta['sizes']['big_mib']} MiB object, commit {meta['commit']}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return f"chart: {path}"


def write(directory: Path, meta: dict[str, Any], rows: list[dict[str, Any]], peers: dict[str, Any] | None) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    text = tables(meta, rows)
    if peers is not None:
        text += ("\n\npeers, same workloads in ../shared/bench (its own backend and definitions: its warm "
                 f"read keeps the page cache; 'project' = s3fuse mounted by it):\n{peers['table'].rstrip()}")
    document = {"meta": meta, "rows": rows, "peers": peers}
    (directory / "latest.json").write_text(json.dumps(document, indent=1))
    history = directory / "history"
    history.mkdir(exist_ok=True)
    (history / f"{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(document))
    text += "\n\n" + chart(directory / "latest.png", meta, rows, peers)
    text += f"\nsaved: {directory / 'latest.txt'}, {directory / 'latest.json'}"
    (directory / "latest.txt").write_text(text + "\n")
    return text
