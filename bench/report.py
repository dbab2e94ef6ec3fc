"""Turns the results of bench/all.sh into a markdown table and a PNG plot.

Usage: python bench/report.py RESULTS_DIR
Reads RESULTS_DIR/results.jsonl (one measurement per line: the tool's RESULT json plus part, system,
param, round, loadavg) and RESULTS_DIR/run.json; writes RESULTS_DIR/table.md and RESULTS_DIR/plot.png.
Each cell is the median over the rounds with the spread (min-max) in brackets; the load average of
the machine while the part ran is given per part.
"""

import json
import os
import re
import statistics
import sys
import textwrap
from collections import OrderedDict, defaultdict

ORDER = ["sqlite", "postgres", "mosquitto", "rumqttd", "sqlite-otlp", "ferroboard-2-nodes", "gateway", "direct"]
NAMES = {
    "sqlite": "ferroboard SQLite",
    "postgres": "ferroboard PostgreSQL",
    "mosquitto": "Mosquitto",
    "rumqttd": "rumqttd",
    "sqlite-otlp": "ferroboard SQLite, trace export on",
    "ferroboard-2-nodes": "ferroboard, 2 nodes",
    "gateway": "gateway",
    "direct": "direct",
}


def get(record, path):
    """A dotted path into a record (None when missing)."""
    value = record
    for part in path.split("."):
        if not isinstance(value, dict) or value.get(part) is None:
            return None
        value = value[part]
    return value


def param_key(param):
    """Sorts params by their first number (keys=1 < keys=3, rate=5000 < rate=10000)."""
    m = re.search(r"\d+", param)
    return (int(m.group()) if m else 0, param)


def failed(record):
    """A load run in which nothing was acknowledged in the window (server stalled or not reached)."""
    return record.get("mode") == "publish" and record.get("qos") == 1 and not record.get("measured_acked")


class Part:
    def __init__(self, records):
        self.failed = [r for r in records if failed(r)]
        records = [r for r in records if not failed(r)]
        self.records = records
        self.params = sorted({r["param"] for r in records}, key=param_key)
        systems = {r["system"] for r in records}
        self.systems = [s for s in ORDER if s in systems] + sorted(systems - set(ORDER))

    def values(self, param, system, path):
        return [v for r in self.records if r["param"] == param and r["system"] == system
                for v in [get(r, path)] if isinstance(v, (int, float))]

    def stat(self, param, system, path):
        """(median, min, max) or None."""
        vals = self.values(param, system, path)
        if not vals:
            return None
        return statistics.median(vals), min(vals), max(vals)

    def load(self):
        loads = [float(r["loadavg"].split()[0]) for r in self.records if r.get("loadavg")]
        return f"load average (1 min) {min(loads):.1f}–{max(loads):.1f}" if loads else ""


def fmt(stat, digits=0, unit=""):
    if stat is None:
        return "–"
    med, lo, hi = stat
    f = f"{{:,.{digits}f}}"
    text = f.format(med) + unit
    if hi > lo:
        text += f" ({f.format(lo)}–{f.format(hi)})"
    return text


def table(part, rows, header_param):
    """Markdown rows: one per param, one column per system; rows is [(label, path, digits, unit)]."""
    out = [f"| {header_param} | " + " | ".join(NAMES.get(s, s) for s in part.systems) + " |",
           "|---|" + "---|" * len(part.systems)]
    for param in part.params:
        for label, path, digits, unit in rows:
            cells = [fmt(part.stat(param, s, path), digits, unit) for s in part.systems]
            out.append(f"| {param}{(', ' + label) if label else ''} | " + " | ".join(cells) + " |")
    return out


SECTIONS = OrderedDict([
    ("throughput", ("QoS 1 throughput, msg/s (PUBACK after commit on ferroboard)", "keys per message",
                    [("", "msg_per_s", 0, ""), ("PUBACK p99", "latency_ms.p99", 1, " ms")])),
    ("latency", ("PUBACK latency at fixed open-loop rates (3 keys)", "total rate, msg/s",
                 [("p50", "latency_ms.p50", 2, " ms"), ("p99", "latency_ms.p99", 2, " ms"),
                  ("reached", "msg_per_s", 0, " msg/s")])),
    ("idle", ("RSS per idle connection, KiB (fresh server per point)", "connections",
              [("", "server_rss_kb.per_connection_delta_kb", 2, " KiB"), ("connected", "connected", 0, "")])),
    ("rows", ("QoS 1 throughput (3 keys) as the telemetry table grows, msg/s", "rows stored",
              [("", "msg_per_s", 0, ""), ("PUBACK p99", "latency_ms.p99", 1, " ms")])),
    ("start", ("Start to healthy, ms (ferroboard: /api/health/ready UP; brokers: port open)", "case",
               [("", "ms", 0, " ms")])),
    ("cluster", ("Two nodes (PostgreSQL, Redis)", "measurement",
                 [("subscribed", "subscribed", 0, ""), ("all received", "all_received_secs", 3, " s"), ("REST phase", "rest_secs", 3, " s"),
                  ("arrival p99 since first POST", "arrival_since_start_ms.p99", 1, " ms"),
                  ("p50", "p50_ms", 2, " ms"), ("p99", "p99_ms", 2, " ms")])),
    ("ws", ("WebSocket live updates, one node (SQLite)", "measurement",
            [("p50", "p50_ms", 2, " ms"), ("p99", "p99_ms", 2, " ms"), ("delivered (min)", "delivered_min", 3, ""),
             ("closed", "closed", 0, "")])),
    ("tracing", ("Trace export off vs on (SQLite, 3 keys), msg/s", "load",
                 [("", "msg_per_s", 0, ""), ("PUBACK p99", "latency_ms.p99", 1, " ms")])),
    ("gateway", ("One gateway vs direct devices (SQLite, QoS 1)", "devices",
                 [("msg/s", "msg_per_s", 0, ""), ("PUBACK p99", "latency_ms.p99", 1, " ms"),
                  ("RSS peak", "server_rss_kb.max", 0, " KiB"), ("RSS before", "server_rss_kb.before", 0, " KiB")])),
])


def drop_empty_rows(lines):
    """Drops table rows where every system cell is '–' (a metric the part does not have)."""
    return [line for line in lines if not (line.startswith("| ") and not line.startswith("| ---")
            and line.count("|") > 2 and all(c.strip() == "–" for c in line.split("|")[2:-1]))]


def markdown(run, parts):
    out = ["# Benchmark results", ""]
    out.append(f"Commit {run.get('commit')}, {run.get('started')} – {run.get('finished', '?')}, "
               f"{run.get('cpus')} CPUs; load average before {run.get('loadavg_before')}, after "
               f"{run.get('loadavg_after', '?')}. {run.get('devices')} devices, {run.get('inflight')} in flight "
               f"each, warm-up {run.get('warmup')} s, window {run.get('duration')} s, {run.get('rounds')} "
               "round(s), systems alternating per round. Cells: median (min–max) over the rounds.")
    for name, (title, header, rows) in SECTIONS.items():
        if name not in parts:
            continue
        part = parts[name]
        out += ["", f"## {title}", "", part.load(), ""]
        out += drop_empty_rows(table(part, rows, header))
        if part.failed:
            out += ["", f"Left out of the figures: {len(part.failed)} run(s) in which nothing was acknowledged "
                        "inside the window (" + ", ".join(f"{NAMES.get(r['system'], r['system'])} {r['param']} "
                                                         f"round {r['round']}" for r in part.failed) + ")."]
        if name == "throughput" and "mosquitto" in part.systems:
            out += ["", "Ratio to Mosquitto (medians): " + "; ".join(
                f"{param} {NAMES[s]} {part.stat(param, s, 'msg_per_s')[0] / part.stat(param, 'mosquitto', 'msg_per_s')[0]:.2f}×"
                for param in part.params for s in ("sqlite", "postgres")
                if part.stat(param, s, "msg_per_s") and part.stat(param, "mosquitto", "msg_per_s"))]
        if name == "tracing":
            off, on = part.stat("keys=3", "sqlite", "msg_per_s"), part.stat("keys=3", "sqlite-otlp", "msg_per_s")
            if off and on:
                out += ["", f"Throughput with export on: {on[0] / off[0]:.1%} of export off "
                            f"(cost {1 - on[0] / off[0]:.1%})."]
    return "\n".join(out) + "\n"


def plot(parts, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [n for n in ("throughput", "latency", "idle", "rows", "start", "cluster") if n in parts]
    if not panels:
        return False
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")

    def errs(stats):
        return [[s[0] - s[1] for s in stats], [s[2] - s[0] for s in stats]]

    def bars(ax, part, path, title, ylabel):
        width = 0.8 / max(1, len(part.systems))
        for i, s in enumerate(part.systems):
            xs, stats = [], []
            for j, p in enumerate(part.params):
                st = part.stat(p, s, path)
                if st:
                    xs.append(j + i * width)
                    stats.append(st)
            if stats:
                ax.bar(xs, [st[0] for st in stats], width, yerr=errs(stats), capsize=3, label=NAMES.get(s, s))
        ax.set_xticks([j + width * (len(part.systems) - 1) / 2 for j in range(len(part.params))])
        ax.set_xticklabels([textwrap.fill(p, 16) for p in part.params], fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)

    def lines(ax, part, path, title, xlabel, ylabel, logx=False):
        for s in part.systems:
            pts = [(param_key(p)[0], part.stat(p, s, path)) for p in part.params]
            pts = [(x, st) for x, st in pts if st]
            if pts:
                ax.errorbar([x for x, _ in pts], [st[0] for _, st in pts], yerr=errs([st for _, st in pts]),
                            marker="o", capsize=3, label=NAMES.get(s, s))
        if logx:
            ax.set_xscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)

    for ax, name in zip(axes.flat, panels):
        part = parts[name]
        if name == "throughput":
            bars(ax, part, "msg_per_s", "QoS 1 throughput by keys per message", "msg/s")
        elif name == "latency":
            lines(ax, part, "latency_ms.p99", "PUBACK p99 at fixed rates", "offered msg/s", "p99 ms")
            ax.set_yscale("log")
        elif name == "idle":
            lines(ax, part, "server_rss_kb.per_connection_delta_kb", "RSS per idle connection", "connections",
                  "KiB / connection", logx=True)
        elif name == "rows":
            lines(ax, part, "msg_per_s", "Throughput as stored rows grow (3 keys)", "rows in ts_kv", "msg/s",
                  logx=True)
        elif name == "start":
            bars(ax, part, "ms", "Start to healthy", "ms")
        elif name == "cluster":
            sub = Part([r for r in part.records if get(r, "p99_ms") is not None])
            if sub.records:
                bars(ax, sub, "p99_ms", "Two nodes: RPC and WebSocket p99", "ms")
            fan = [r for r in part.records if get(r, "all_received_secs") is not None]
            for param in sorted({r["param"] for r in fan}):
                secs = [r["all_received_secs"] for r in fan if r["param"] == param]
                ax.set_title(ax.get_title() + f"\n{param}: all received after {statistics.median(secs):.2f} s "
                             f"(median of {len(secs)})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main():
    out = sys.argv[1]
    run = json.load(open(os.path.join(out, "run.json")))
    records = [json.loads(line) for line in open(os.path.join(out, "results.jsonl")) if line.strip()]
    grouped = defaultdict(list)
    for r in records:
        grouped[r["part"]].append(r)
    parts = {name: Part(recs) for name, recs in grouped.items()}
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(markdown(run, parts))
    try:
        made = plot(parts, os.path.join(out, "plot.png"))
    except ImportError as e:
        print(f"report.py: no plot ({e}; matplotlib is in tests/acceptance/requirements.txt)", file=sys.stderr)
        made = False
    print(os.path.join(out, "table.md") + (" " + os.path.join(out, "plot.png") if made else ""))


if __name__ == "__main__":
    main()
