# -*- coding: utf-8 -*-
# Copyright: immutable.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The exposure report for people: a static, self-contained HTML page (inline CSS,
no script, no external asset; every value escaped) and compact Markdown, from the
data _exposure.join() builds. Both keep the data's order (severity, then id)."""

from __future__ import annotations

from html import escape

from ansible_collections.immutable.infra.plugins.module_utils._exposure import LIVE, SEVERITIES

_COLORS = {"critical": "#8b0a1a", "high": "#d9480f", "medium": "#e8a200", "low": "#2f7d3a",
           "negligible": "#6c757d", "unknown": "#495057"}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:20px 32px}
header h1{margin:0 0 4px;font-size:22px}
header .meta{color:#b8c0cc;font-size:13px}
header code{background:#2d3546;color:#fff}
main{padding:16px 32px 40px;max-width:1400px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0}
.card{background:#fff;border-radius:8px;padding:10px 16px;min-width:96px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.card b{display:block;font-size:24px}
.card.sev{border-top:4px solid var(--c)}
h2{margin:28px 0 8px;font-size:18px}
section.cve,section.stack{background:#fff;border-radius:8px;padding:12px 16px;margin:12px 0;
 box-shadow:0 1px 2px rgba(0,0,0,.08);border-left:6px solid var(--c)}
section h3{margin:0 0 6px;font-size:16px}
.badge{display:inline-block;border-radius:4px;padding:1px 8px;color:#fff;font-size:12px;font-weight:600;
 text-transform:uppercase;background:var(--c)}
.tag{display:inline-block;border-radius:4px;padding:1px 6px;font-size:12px;border:1px solid #ccd;margin-right:4px}
.fix{background:#e6f4ea;border-color:#8fc79b}.nofix{background:#fdecea;border-color:#f1a7a0}
.waived{background:#fff4d6;border-color:#e8c96a}
.live{background:#fde2e1;border-color:#e8898a;font-weight:600}.retained{background:#eef1f5}
.muted{color:#6b7280}.alias{color:#6b7280;font-weight:400;font-size:13px}
table{border-collapse:collapse;width:100%;margin:6px 0 4px;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e5e7eb;vertical-align:top}
th{background:#f8f9fb;font-weight:600;color:#374151}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f3f4f6;padding:0 3px;border-radius:3px}
.num{text-align:right}
"""


def _e(value):
    return escape("" if value is None else str(value), quote=True)


def _color(severity):
    return _COLORS.get(severity or "unknown", _COLORS["unknown"])


def _badge(severity):
    return '<span class="badge" style="--c:%s">%s</span>' % (_color(severity), _e(severity or "none"))


def _fix(available):
    return '<span class="tag fix">fix available</span>' if available else '<span class="tag nofix">no fix</span>'


def _traffic(traffic):
    return '<span class="tag %s">%s</span>' % ("live" if traffic == LIVE else "retained", _e(traffic))


def _short(digest):
    return (digest or "")[:19]


def _version(v):
    return "%s:%s" % (v.get("repository"), v.get("version"))


def _waived(v):
    w = v.get("waived")
    return '<span class="tag waived" title="%s">waived until %s</span>' % (
        _e(w.get("reason")), _e(w.get("expires"))) if w else ""


def _cve_section(c):
    rows = []
    for v in c["versions"]:
        groups = [g for g in c["groups"] if g["digest"] == v["digest"]] or [None]
        for g in groups:
            cells = [
                '<code>%s</code><div class="muted">%s</div>%s' % (_e(_version(v)), _e(_short(v["digest"])), _waived(v)),
                "<br>".join(_e(p) for p in v["packages"]),
                " ".join('<span class="tag">%s</span>' % _e(ch) for ch in v["channels"]) or '<span class="muted">none</span>',
            ]
            if g is None:
                cells += ['<span class="muted">not running</span>', "", "", "", ""]
            else:
                cells += ["<code>%s</code>" % _e(g["name"]), _e("%s/%s" % (g["app"], g["stack"])), _traffic(g["traffic"]),
                          '%s<span class="muted"> (%s running)</span>' % (_e(g["instances"]), _e(g["running"])),
                          _e(", ".join(g["zones"]))]
            rows.append("<tr>%s</tr>" % "".join("<td>%s</td>" % cell for cell in cells))
    aliases = ' <span class="alias">%s</span>' % _e(", ".join(c["aliases"])) if c["aliases"] else ""
    where = "live in %s" % ", ".join(c["live_stacks"]) if c["live"] else (
        "retained only" if c["groups"] else "not running")
    return "\n".join([
        '<section class="cve" id="%s" style="--c:%s">' % (_e("cve-" + c["id"]), _color(c["severity"])),
        "<h3>%s %s%s %s</h3>" % (_badge(c["severity"]), _e(c["id"]), aliases, _fix(c["fix_available"])),
        '<div class="muted">%s</div>' % _e(c["summary"]) if c["summary"] else "",
        "<div>%s &middot; %s instance(s), %s live &middot; zones: %s</div>" % (
            _e(where), _e(c["instances"]), _e(c["live_instances"]), _e(", ".join(c["zones"]) or "none")),
        '<table class="cve-table"><thead><tr><th>Image version</th><th>Package installed &rarr; fixed</th>'
        "<th>Channels</th><th>Server group</th><th>Stack</th><th>Traffic</th><th>Instances</th><th>Zones</th>"
        "</tr></thead><tbody>",
        "\n".join(rows), "</tbody></table></section>"])


def _stack_section(s):
    runs = "".join(
        "<tr><td><code>%s</code></td><td><code>%s</code></td><td>%s</td><td class=\"num\">%s</td><td>%s</td>"
        "<td>%s</td></tr>" % (_e(g["name"]), _e("%s:%s" % (g["repository"], g["version"])), _traffic(g["traffic"]),
                              _e(g["instances"]), _e(", ".join(g["zones"])), _e(", ".join(g["cves"]) or "none"))
        for g in s["groups"])
    carried = "".join(
        "<tr><td>%s</td><td><a href=\"#%s\">%s</a></td><td>%s</td><td>%s</td><td>%s</td></tr>" % (
            _badge(c["severity"]), _e("cve-" + c["id"]), _e(c["id"]), _fix(c["fix_available"]),
            "<br>".join(_e(p) for p in c["packages"]),
            " ".join('<span class="tag %s">%s</span>' % ("live" if g in c["live_groups"] else "retained", _e(g))
                     for g in c["groups"]))
        for c in s["cves"])
    color = _color(s["worst"]) if s["worst"] else "#2f7d3a"
    return "\n".join([
        '<section class="stack" id="%s" style="--c:%s">' % (_e("stack-" + s["name"]), color),
        "<h3>%s %s <span class=\"muted\">%s instance(s)</span></h3>" % (
            _badge(s["worst"]) if s["worst"] else '<span class="tag fix">no known CVE</span>', _e(s["name"]),
            _e(s["instances"])),
        '<table class="runs"><thead><tr><th>Server group</th><th>Image version</th><th>Traffic</th>'
        '<th class="num">Instances</th><th>Zones</th><th>CVEs</th></tr></thead><tbody>%s</tbody></table>' % runs,
        ('<table class="carried"><thead><tr><th>Severity</th><th>CVE</th><th>Fix</th><th>Package installed &rarr; '
         "fixed</th><th>Groups</th></tr></thead><tbody>%s</tbody></table>" % carried) if carried else "",
        "</section>"])


def page(data):
    """The HTML page (one string, self-contained)."""
    summary = data["summary"]
    cards = ['<div class="card sev" style="--c:%s"><b>%s</b>%s</div>' % (_color(sev), _e(summary["by_severity"][sev]), _e(sev))
             for sev in SEVERITIES]
    cards += ['<div class="card"><b>%s</b>%s</div>' % (_e(n), _e(what)) for n, what in (
        (summary["live"], "CVEs live"), (summary["fixable"], "fixable"), (summary["stacks"], "stacks"),
        (summary["groups"], "server groups"), (summary["instances"], "instances"),
        (summary["versions_scanned"], "versions scanned"))]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>Exposure report - %s</title>" % _e(data["registry"]), "<style>%s</style></head><body>" % _CSS,
        "<header><h1>Exposure report</h1>",
        '<div class="meta">registry <code>%s</code> &middot; generated <time class="generated">%s</time> &middot; '
        "newest scan %s &middot; platforms %s%s</div></header><main>" % (
            _e(data["registry"]), _e(data["generated"]), _e(data["scanned_at"] or "none"),
            _e(", ".join(data["platforms"]) or "none"),
            " &middot; filter %s" % _e(", ".join(data["filter"] + ["app " + a for a in data.get("apps") or []]))
            if data["filter"] or data.get("apps") else ""),
        '<div class="cards" id="summary">%s</div>' % "".join(cards),
    ]
    if data["not_found"]:
        parts.append('<p id="not-found">Not found in any scanned version: %s</p>' % _e(", ".join(data["not_found"])))
    parts.append('<h2 id="cves">CVEs (%d)</h2>' % len(data["cves"]))
    parts += [_cve_section(c) for c in data["cves"]] or ['<p class="muted">No finding in the scanned versions.</p>']
    parts.append('<h2 id="stacks">Stacks (%d)</h2>' % len(data["stacks"]))
    parts += [_stack_section(s) for s in data["stacks"]] or ['<p class="muted">No server group runs.</p>']
    if data["unscanned"]:
        parts.append('<h2 id="unscanned">Running, never scanned (%d)</h2><table><thead><tr><th>Server group</th>'
                     "<th>Stack</th><th>Image</th><th>Traffic</th><th>Instances</th></tr></thead><tbody>%s"
                     "</tbody></table>" % (len(data["unscanned"]), "".join(
                         "<tr><td><code>%s</code></td><td>%s</td><td><code>%s</code></td><td>%s</td><td>%s</td></tr>" % (
                             _e(g["name"]), _e("%s/%s" % (g["app"], g["stack"])), _e(g["digest"]), _traffic(g["traffic"]),
                             _e(g["instances"])) for g in data["unscanned"])))
    parts.append("</main></body></html>")
    return "\n".join(p for p in parts if p) + "\n"


# ------------------------------------------------------------------ markdown
def _md(value):
    """A Markdown table cell: pipes escaped, one line."""
    return str("" if value is None else value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown(data):
    s = data["summary"]
    out = ["# Exposure report", "",
           "Registry `%s` · Generated %s · newest scan %s · platforms %s" % (
               _md(data["registry"]), data["generated"], _md(data["scanned_at"] or "none"), _md(", ".join(data["platforms"]))),
           "", "**%d CVEs**: %s · %d live · %d fixable · %d stacks · %d instances" % (
               s["cves"], ", ".join("%d %s" % (s["by_severity"][sev], sev) for sev in SEVERITIES if s["by_severity"][sev])
               or "none", s["live"], s["fixable"], s["stacks"], s["instances"]), ""]
    if data["not_found"]:
        out += ["Not found in any scanned version: %s" % _md(", ".join(data["not_found"])), ""]
    for c in data["cves"]:
        fix = "fix available" if c["fix_available"] else "no fix"
        aka = " aka " + _md(", ".join(c["aliases"])) if c["aliases"] else ""
        out += ["## %s (%s, %s)%s" % (_md(c["id"]), c["severity"], fix, aka), ""]
        out += ["| Version | Packages | Channels | Group | Stack | Traffic | Instances | Zones |",
                "|---|---|---|---|---|---|---|---|"]
        for v in c["versions"]:
            for g in [g for g in c["groups"] if g["digest"] == v["digest"]] or [None]:
                waived = " (waived until %s)" % v["waived"].get("expires") if v.get("waived") else ""
                cells = [_version(v) + waived, "; ".join(v["packages"]), ", ".join(v["channels"])]
                cells += ["not running", "", "", "", ""] if g is None else [
                    g["name"], "%s/%s" % (g["app"], g["stack"]), g["traffic"], g["instances"], ", ".join(g["zones"])]
                out.append("| %s |" % " | ".join(_md(x) for x in cells))
        out.append("")
    out += ["## Stacks", ""]
    for st in data["stacks"]:
        out += ["### %s (worst: %s)" % (_md(st["name"]), st["worst"] or "none"), ""]
        out += ["- runs %s (%s, %s, %d instance(s), zones %s)" % (
            _md(g["name"]), _md("%s:%s" % (g["repository"], g["version"])), g["traffic"], g["instances"],
            _md(", ".join(g["zones"]) or "none")) for g in st["groups"]]
        out += ["- %s %s (%s): %s in %s" % (c["severity"], _md(c["id"]), "fix available" if c["fix_available"] else "no fix",
                                            _md("; ".join(c["packages"])), _md(", ".join(c["groups"])))
                for c in st["cves"]]
        out.append("")
    if data["unscanned"]:
        out += ["## Running, never scanned", ""] + ["- %s (%s/%s, %s, %s)" % (
            _md(g["name"]), _md(g["app"]), _md(g["stack"]), _md(g["digest"]), g["traffic"]) for g in data["unscanned"]] + [""]
    return "\n".join(out)
