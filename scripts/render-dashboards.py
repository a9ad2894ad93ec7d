#!/usr/bin/env python3
"""Renders the two Grafana dashboards as pictures from real data (Grafana itself does not reach
these machines): every panel's own query is run — PromQL against a real Prometheus that scraped
the running ingest and sink, SQL against the real ClickHouse — and plotted with matplotlib.

Used by scripts/render-dashboards.sh after scripts/up.sh; writes docs/img/*.png.
  render-dashboards.py <prometheus url> <clickhouse url> <database> <out dir>
"""
import json
import math
import os
import sys
import time
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROM, CH, DB, OUT = sys.argv[1:5]


def get_json(url, data=None):
    return json.load(urllib.request.urlopen(urllib.request.Request(url, data), timeout=30))


def prom_range(expr, start, end, step):
    q = urllib.parse.urlencode({"query": expr.replace("$__rate_interval", "30s"), "start": start,
                                "end": end, "step": step})
    return get_json(f"{PROM}/api/v1/query_range?{q}")["data"]["result"]


def legend(fmt, metric):
    out = fmt
    for k, v in metric.items():
        out = out.replace("{{" + k + "}}", v)
    return out


def ch_rows(sql, since, until):
    sql = (sql.replace("$__timeFilter(ts)", f"ts >= toDateTime({since}) AND ts <= toDateTime({until})")
           .replace("$__fromTime", f"toDateTime({since})").replace("$__toTime", f"toDateTime({until})"))
    body = (sql + " FORMAT JSONCompact").encode()
    res = get_json(f"{CH}/?database={DB}", body)
    return [c["name"] for c in res["meta"]], res["data"]


def grid(n):
    cols = 2
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(15, 3.6 * math.ceil(n / cols)))
    return fig, [a for row in axes for a in row]


def health(dash, start, end):
    panels = dash["panels"]
    fig, axes = grid(len(panels))
    for ax, p in zip(axes, panels):
        for t in p["targets"]:
            for series in prom_range(t["expr"], start, end, 5):
                xs = [float(v[0]) - start for v in series["values"]]
                ys = [float(v[1]) for v in series["values"]]
                ys = [0.0 if math.isnan(y) else y for y in ys]
                ax.plot(xs, ys, label=legend(t["legendFormat"], series["metric"]))
        unit = p["fieldConfig"]["defaults"].get("unit", "")
        ax.set_title(p["title"] + (f"  [{unit}]" if unit else ""), fontsize=10)
        ax.set_xlabel("seconds", fontsize=8)
        ax.tick_params(labelsize=8)
        if ax.lines:
            ax.legend(fontsize=7, loc="upper right")
        else:
            ax.text(0.5, 0.5, "no data in this window", ha="center", transform=ax.transAxes)
    for ax in axes[len(panels):]:
        ax.axis("off")
    fig.suptitle(dash["title"] + " (Prometheus, real scrape of the demo run)")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "pipeline-health.png"), dpi=80)


def analytics(dash, since, until):
    panels = dash["panels"]
    fig, axes = grid(len(panels) + 1)
    axes[1].axis("off")
    slots = [axes[0]] + axes[2:]
    for ax, p in zip(slots, panels):
        names, rows = ch_rows(p["targets"][0]["rawSql"], since, until)
        ax.set_title(p["title"], fontsize=10)
        if not rows:
            ax.text(0.5, 0.5, "no rows", ha="center", transform=ax.transAxes)
            continue
        if p["type"] == "table":
            shown = rows[:8]
            ax.axis("off")
            table = ax.table(cellText=[[str(c)[:28] for c in r] for r in shown], colLabels=names,
                             loc="center", cellLoc="left")
            table.auto_set_font_size(False)
            table.set_fontsize(7)
            table.scale(1, 1.3)
            continue
        labels = [str(r[0])[:16] for r in rows]
        value_cols = [(i, n) for i, n in enumerate(names) if i > 0 and n not in ("message_type",)]
        if "message_type" in names:  # one series per type
            mt = names.index("message_type")
            types = sorted({r[mt] for r in rows})
            times = sorted({r[0] for r in rows})
            for ty in types:
                ys = [sum(float(r[-1]) for r in rows if r[0] == t and r[mt] == ty) for t in times]
                ax.plot([t[5:16] for t in times], ys, marker="o", label=ty)
            ax.legend(fontsize=7)
            continue
        width = 0.8 / len(value_cols)
        for k, (i, n) in enumerate(value_cols):
            ax.bar([x + k * width for x in range(len(rows))], [float(r[i]) for r in rows], width, label=n)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(rows))], labels, fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(dash["title"] + " (ClickHouse, demo data)")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "delivery-analytics.png"), dpi=80)


def main():
    os.makedirs(OUT, exist_ok=True)
    dashboards = os.path.join(ROOT, "deploy/grafana/dashboards")
    end = time.time()
    health(json.load(open(os.path.join(dashboards, "pipeline-health.json"))), end - 300, end)
    analytics(json.load(open(os.path.join(dashboards, "delivery-analytics.json"))),
              int(end) - 7 * 86400, int(end) + 3600)
    print(f"wrote {OUT}/pipeline-health.png and {OUT}/delivery-analytics.png")


if __name__ == "__main__":
    main()
