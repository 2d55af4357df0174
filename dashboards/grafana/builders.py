"""Grafana JSON building blocks: constants (data source, filters, colors, the
dashboards' uids and titles), queries (`target`), thresholds, value mappings,
the panel types this project uses (timeseries, stat, bargauge,
state-timeline, table, text, row) and the grid layout."""

from __future__ import annotations

SCHEMA_VERSION = 41
DS = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ["keyshift"]
RP = 'rp_id=~"$rp_id"'
RO = 'rollout=~"$rollout"'

DASHBOARDS = {
    "keyshift-passkey-adoption": ("passkey-adoption.json", "keyshift · Passkey adoption"),
    "keyshift-rollouts": ("rollouts.json", "keyshift · Rollouts"),
    "keyshift-auth-reliability": ("auth-reliability.json", "keyshift · Auth reliability"),
}

# Colors of Grafana's palette, by name.
GREEN, YELLOW, ORANGE, RED, BLUE, PURPLE, GREY = (
    "green", "yellow", "orange", "red", "blue", "purple", "text",
)


def target(expr, legend=None, *, instant=False, fmt=None, hide=False):
    """One Prometheus query; refIds are assigned by the panel."""
    t = {
        "datasource": dict(DS),
        "editorMode": "code",
        "expr": " ".join(expr.split()),
        "instant": instant,
        "range": not instant,
    }
    if legend is not None:
        t["legendFormat"] = legend
    if fmt is not None:
        t["format"] = fmt
    if hide:
        t["hide"] = True
    return t


def thresholds(*steps):
    """thresholds(GREEN, (0.8, ORANGE), (0.9, RED)): base color, then (value, color)."""
    out = [{"color": steps[0], "value": None}]
    out += [{"color": c, "value": v} for v, c in steps[1:]]
    return {"mode": "absolute", "steps": out}


def value_map(pairs):
    """A value mapping: {"1": ("running", GREEN), ...}."""
    opts = {}
    for i, (k, (text, color)) in enumerate(pairs):
        opts[str(k)] = {"color": color, "index": i, "text": text}
    return [{"options": opts, "type": "value"}]


def legend(mode="list", calcs=None, show=True, placement="bottom"):
    return {
        "calcs": list(calcs or []),
        "displayMode": mode,
        "placement": placement,
        "showLegend": show,
    }


def panel(kind, title, description, unit, targets, *, w, h, options, custom=None,
          min=None, max=None, decimals=None, th=None, mappings=None, overrides=None,
          color=None, transformations=None, repeat=None, links=None, no_value=None):
    defaults = {"unit": unit}
    if no_value is not None:
        defaults["noValue"] = no_value
    if color is not None:
        defaults["color"] = color
    if custom is not None:
        defaults["custom"] = custom
    for key, val in (("min", min), ("max", max), ("decimals", decimals)):
        if val is not None:
            defaults[key] = val
    defaults["thresholds"] = th or thresholds(GREEN)
    if mappings:
        defaults["mappings"] = mappings
    p = {
        "datasource": dict(DS),
        "description": " ".join(description.split()),
        "fieldConfig": {"defaults": defaults, "overrides": list(overrides or [])},
        "options": options,
        "targets": [],
        "title": title,
        "type": kind,
        "_size": (w, h),
    }
    for i, t in enumerate(targets):
        t = dict(t)
        t["refId"] = chr(ord("A") + i)
        p["targets"].append(t)
    if transformations:
        p["transformations"] = transformations
    if repeat:
        p["repeat"] = repeat
        p["repeatDirection"] = "h"
        p["maxPerRow"] = 2
    if links:
        p["links"] = links
    return p


def timeseries(title, description, unit, targets, *, w=12, h=8, stack=False,
               percent_stack=False, interpolation="linear", fill=10, legend_mode="list",
               legend_calcs=None, overrides=None, min=None, max=None, th=None,
               thresholds_style=None, decimals=None, draw="line", repeat=None):
    custom = {
        "drawStyle": draw,
        "fillOpacity": fill,
        "lineInterpolation": interpolation,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "percent" if percent_stack else ("normal" if stack else "none")},
    }
    if thresholds_style:
        custom["thresholdsStyle"] = {"mode": thresholds_style}
    options = {
        "legend": legend(legend_mode, legend_calcs),
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel("timeseries", title, description, unit, targets, w=w, h=h, options=options,
                 custom=custom, min=min, max=max, th=th, overrides=overrides, decimals=decimals,
                 color={"mode": "palette-classic"}, repeat=repeat)


def stat(title, description, unit, targets, *, w=6, h=4, th=None, decimals=None,
         calc="lastNotNull", mappings=None, color_mode="value", graph="none", text_mode="auto",
         min=None, max=None, no_value=None):
    options = {
        "colorMode": color_mode,
        "graphMode": graph,
        "justifyMode": "auto",
        "orientation": "auto",
        "percentChangeColorMode": "standard",
        "reduceOptions": {"calcs": [calc], "fields": "", "values": False},
        "showPercentChange": False,
        "textMode": text_mode,
        "wideLayout": True,
    }
    return panel("stat", title, description, unit, targets, w=w, h=h, options=options,
                 th=th, decimals=decimals, mappings=mappings, min=min, max=max,
                 color={"mode": "thresholds"}, no_value=no_value)


def bargauge(title, description, unit, targets, *, w=12, h=8, th=None, min=None, max=None,
             decimals=None, display="gradient"):
    options = {
        "displayMode": display,
        "legend": legend(show=False),
        "maxVizHeight": 300,
        "minVizHeight": 16,
        "minVizWidth": 8,
        "namePlacement": "top",
        "orientation": "horizontal",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showUnfilled": True,
        "sizing": "auto",
        "valueMode": "color",
    }
    return panel("bargauge", title, description, unit, targets, w=w, h=h, options=options,
                 th=th, min=min, max=max, decimals=decimals, color={"mode": "thresholds"})


def state_timeline(title, description, unit, targets, mappings, *, w=12, h=8):
    options = {
        "alignValue": "left",
        "legend": legend(),
        "mergeValues": True,
        "rowHeight": 0.8,
        "showValue": "auto",
        "tooltip": {"mode": "single", "sort": "none"},
    }
    custom = {"fillOpacity": 70, "lineWidth": 0}
    return panel("state-timeline", title, description, unit, targets, w=w, h=h,
                 options=options, custom=custom, mappings=mappings,
                 color={"mode": "thresholds"})


def table(title, description, unit, targets, *, w=12, h=8, transformations=None,
          overrides=None, mappings=None):
    options = {
        "cellHeight": "sm",
        "footer": {"countRows": False, "reducer": ["sum"], "show": False},
        "frameIndex": 0,
        "showHeader": True,
    }
    custom = {"align": "auto", "inspect": False}
    return panel("table", title, description, unit, targets, w=w, h=h, options=options,
                 custom=custom, transformations=transformations, overrides=overrides,
                 mappings=mappings, color={"mode": "thresholds"})


def text(title, description, content, *, w=24, h=6):
    return {
        "description": " ".join(description.split()),
        "options": {"content": content, "mode": "markdown"},
        "title": title,
        "type": "text",
        "_size": (w, h),
    }


def row(title):
    return {"collapsed": False, "panels": [], "title": title, "type": "row", "_size": (24, 1)}


def layout(items):
    """Places panels on Grafana's 24-column grid, in order, each at the
    lowest free position (then the leftmost) below the current row header,
    so a column of short panels can sit beside a tall one. Ids in order, from 1."""
    sky = [0] * 24  # the first free y of each column
    out = []
    for i, p in enumerate(items, start=1):
        p = dict(p)
        w, h = p.pop("_size")
        if p["type"] == "row":
            x, y = 0, max(sky)
        else:
            y, x = min((max(sky[x:x + w]), x) for x in range(0, 25 - w))
        for col in range(x, x + w):
            sky[col] = y + h
        if p["type"] == "row":
            sky = [y + h] * 24
        p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        p["id"] = i
        out.append(p)
    return out
