"""A self-contained HTML report of a RAG evaluation: metric bars, groups, comparison CIs, and every item."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Metrics where a lower value is better (drawn and described accordingly).
LOWER_IS_BETTER = frozenset({"false_refusal_rate"})

_CSS = """
:root { --ok: #1a7f37; --bad: #cf222e; --muted: #57606a; --line: #d0d7de; --bar: #0969da; }
* { box-sizing: border-box; }
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", "Noto Sans", "PingFang SC", sans-serif; margin: 0;
       color: #1f2328; background: #fff; }
header, main { max-width: 1200px; margin: 0 auto; padding: 16px 24px; }
header { border-bottom: 1px solid var(--line); }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 10px; }
.config { color: var(--muted); font-size: 12px; }
.config span { margin-right: 14px; white-space: nowrap; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid var(--line); padding: 6px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
#items th { position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.bad { color: var(--bad); } .good { color: var(--ok); } .muted { color: var(--muted); }
.claim.unsupported { background: #ffebe9; border-bottom: 2px solid var(--bad); }
.claim.supported { background: #dafbe1; }
.excluded { color: var(--muted); }
details summary { cursor: pointer; color: var(--bar); }
blockquote { margin: 6px 0; padding: 4px 10px; border-left: 3px solid var(--line); white-space: pre-wrap;
             max-height: 240px; overflow: auto; font-size: 13px; }
.tools { margin: 8px 0; display: flex; gap: 16px; align-items: center; flex-wrap: wrap; }
.reason { font-size: 12px; color: var(--bad); }
.tag { font-size: 11px; padding: 1px 6px; border-radius: 8px; background: #eaeef2; margin-left: 4px; }
svg text { font: 12px system-ui, sans-serif; }
th.wide { width: 45%; }
dl.scores { display: grid; grid-template-columns: auto auto; gap: 0 10px; margin: 0; font-size: 12px; }
dl.scores dt { color: var(--muted); } dl.scores dd { margin: 0; text-align: right;
  font-variant-numeric: tabular-nums; }
"""

_SCRIPT = """
const rows = Array.from(document.querySelectorAll('#items tbody tr'));
function applyFilters() {
  const text = document.getElementById('filter-text').value.toLowerCase();
  const onlyBad = document.getElementById('filter-unsupported').checked;
  let shown = 0;
  for (const row of rows) {
    const visible = (!text || row.textContent.toLowerCase().includes(text)) &&
                    (!onlyBad || row.dataset.unsupported === '1');
    row.hidden = !visible; shown += visible;
  }
  document.getElementById('shown').textContent = shown;
}
document.getElementById('filter-text').addEventListener('input', applyFilters);
document.getElementById('filter-unsupported').addEventListener('change', applyFilters);
"""


def write_report(result: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``result`` (what ``evaluate_rag`` returns) as one HTML file with everything embedded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(result), encoding="utf-8")
    return path


def render_report(result: Mapping[str, Any]) -> str:
    """The report as an HTML string (no external file, script or font is referenced)."""
    metrics: dict[str, float] = dict(result.get("metrics", {}))
    counts: dict[str, int] = dict(result.get("counts", {}))
    config: dict[str, Any] = dict(result.get("config", {}))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>ragtune eval rag — {_e(config.get('data') or config.get('kb') or 'report')}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<header><h1>RAG evaluation</h1>", _config_line(config, result.get("timings_ms", {})), "</header><main>",
        "<section id='summary'><h2>Metrics</h2>", _bars(metrics, counts), "</section>",
    ]
    if result.get("comparison"):
        parts += ["<section id='comparison'><h2>Compared with the baseline run</h2>",
                  _comparison(result["comparison"]), "</section>"]
    for field, groups in (result.get("groups") or {}).items():
        parts += [f"<section class='groups'><h2>By {_e(field)}</h2>", _groups(groups, list(metrics)), "</section>"]
    if result.get("latency_ms"):
        parts += ["<section id='latency'><h2>Latency per stage (ms)</h2>", _latency(result["latency_ms"]),
                  "</section>"]
    items = list(result.get("items", []))
    parts += ["<section id='items-section'><h2>Items</h2>",
              "<div class='tools'><label>Filter <input id='filter-text' type='search' placeholder='text'></label>",
              "<label><input id='filter-unsupported' type='checkbox'> only items with unsupported claims</label>",
              f"<span class='muted'><span id='shown'>{len(items)}</span> of {len(items)} shown</span></div>",
              _items(items, list(metrics)), "</section></main>",
              f"<script>{_SCRIPT}</script></body></html>"]
    return "".join(parts)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _config_line(config: Mapping[str, Any], timings: Mapping[str, Any]) -> str:
    shown = []
    for key in ("data", "data_sha256", "kb", "model", "judge", "embedder", "rows", "ragtune"):
        if config.get(key) is not None:
            value = str(config[key])[:16] + "…" if key == "data_sha256" else config[key]
            shown.append(f"<span><b>{_e(key)}</b> {_e(value)}</span>")
    if timings.get("total") is not None:
        shown.append(f"<span><b>time</b> {float(timings['total']) / 1000:.1f} s</span>")
    return f"<div class='config'>{''.join(shown)}</div>"


def _bars(metrics: Mapping[str, float], counts: Mapping[str, int]) -> str:
    """One horizontal bar per metric on a 0–1 scale, as inline SVG."""
    label_w, bar_w, row_h = 200, 560, 26
    height = row_h * len(metrics) + 24
    out = [f"<svg id='metric-bars' role='img' aria-label='metric means' width='{label_w + bar_w + 140}' "
           f"height='{height}' viewBox='0 0 {label_w + bar_w + 140} {height}'>"]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        x = label_w + tick * bar_w
        out.append(f"<line x1='{x}' x2='{x}' y1='0' y2='{height - 18}' stroke='#d0d7de'/>"
                   f"<text x='{x}' y='{height - 4}' text-anchor='middle' fill='#57606a'>{tick:g}</text>")
    for i, (name, value) in enumerate(metrics.items()):
        y = i * row_h + 4
        colour = "#cf222e" if name in LOWER_IS_BETTER else "#0969da"
        note = " ↓" if name in LOWER_IS_BETTER else ""
        out.append(
            f"<g class='bar' data-metric='{_e(name)}'><title>{_e(name)}: {value:.4f} over {counts.get(name, 0)} "
            f"rows</title><text x='{label_w - 8}' y='{y + 15}' text-anchor='end'>{_e(name)}{note}</text>"
            f"<rect x='{label_w}' y='{y}' width='{max(value, 0) * bar_w:.1f}' height='{row_h - 8}' "
            f"fill='{colour}' rx='3'/><text x='{label_w + max(value, 0) * bar_w + 6:.1f}' y='{y + 15}'>"
            f"{value:.3f} <tspan fill='#57606a'>(n={counts.get(name, 0)})</tspan></text></g>")
    out.append("</svg>")
    return "".join(out)


def _comparison(comparison: Mapping[str, Any]) -> str:
    rows = dict(comparison.get("metrics", {}))
    confidence = float(comparison.get("confidence", 0.95))
    out = [_forest(rows)] if rows else []
    out.append(f"<table id='comparison-table'><thead><tr><th>metric</th><th class='num'>baseline</th>"
               f"<th class='num'>current</th><th class='num'>difference</th>"
               f"<th class='num'>{confidence:.0%} CI</th><th class='num'>n</th><th></th></tr></thead><tbody>")
    for name, row in rows.items():
        better = (row["difference"] < 0) if name in LOWER_IS_BETTER else (row["difference"] > 0)
        verdict = ("better" if better else "worse") if row["significant"] else "no clear difference"
        css = ("good" if better else "bad") if row["significant"] else "muted"
        out.append(f"<tr><td>{_e(name)}</td><td class='num'>{row['baseline']:.4f}</td>"
                   f"<td class='num'>{row['current']:.4f}</td><td class='num'>{row['difference']:+.4f}</td>"
                   f"<td class='num'>[{row['low']:+.4f}, {row['high']:+.4f}]</td><td class='num'>{row['n']}</td>"
                   f"<td class='{css}'>{verdict}</td></tr>")
    out.append("</tbody></table>")
    for warning in comparison.get("warnings", []):
        out.append(f"<p class='bad'>⚠ {_e(warning)}</p>")
    return "".join(out)


def _forest(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """Each metric's difference as a point with its CI as a whisker, around a zero line (inline SVG)."""
    label_w, plot_w, row_h = 200, 520, 24
    span = max([abs(float(r[k])) for r in rows.values() for k in ("low", "high", "difference")] + [0.05])
    height = row_h * len(rows) + 24

    def x(v: float) -> float:
        return label_w + (v / span + 1) / 2 * plot_w

    out = [f"<svg id='comparison-plot' role='img' aria-label='differences with confidence intervals' "
           f"width='{label_w + plot_w + 20}' height='{height}'>",
           f"<line x1='{x(0)}' x2='{x(0)}' y1='0' y2='{height - 18}' stroke='#57606a' stroke-dasharray='3 3'/>",
           f"<text x='{x(-span)}' y='{height - 4}' fill='#57606a'>{-span:+.3f}</text>",
           f"<text x='{x(span)}' y='{height - 4}' text-anchor='end' fill='#57606a'>{span:+.3f}</text>"]
    for i, (name, r) in enumerate(rows.items()):
        y = i * row_h + 12
        out.append(f"<g class='ci'><text x='{label_w - 8}' y='{y + 4}' text-anchor='end'>{_e(name)}</text>"
                   f"<line x1='{x(r['low']):.1f}' x2='{x(r['high']):.1f}' y1='{y}' y2='{y}' stroke='#0969da' "
                   f"stroke-width='2'/><circle cx='{x(r['difference']):.1f}' cy='{y}' r='4' fill='#0969da'/></g>")
    out.append("</svg>")
    return "".join(out)


def _groups(groups: Mapping[str, Mapping[str, Any]], metrics: Sequence[str]) -> str:
    out = ["<table class='group-table'><thead><tr><th>group</th>",
           *(f"<th class='num'>{_e(m)}</th>" for m in metrics), "</tr></thead><tbody>"]
    for name, group in groups.items():
        cells = []
        for metric in metrics:
            if metric in group["metrics"]:
                cells.append(f"<td class='num'>{group['metrics'][metric]:.3f} "
                             f"<span class='muted'>({group['counts'][metric]})</span></td>")
            else:
                cells.append("<td class='num muted'>—</td>")
        out.append(f"<tr><td>{_e(name)}</td>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _latency(latency: Mapping[str, Mapping[str, float]]) -> str:
    out = ["<table id='latency-table'><thead><tr><th>stage</th><th class='num'>p50</th><th class='num'>p95</th>"
           "<th class='num'>mean</th></tr></thead><tbody>"]
    for stage, row in latency.items():
        out.append(f"<tr><td>{_e(stage)}</td><td class='num'>{row.get('p50', 0):.1f}</td>"
                   f"<td class='num'>{row.get('p95', 0):.1f}</td><td class='num'>{row.get('mean', 0):.1f}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _items(items: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> str:
    out = ["<table id='items'><thead><tr><th>#</th><th>question</th><th class='wide'>response and sources</th>"
           "<th>scores</th></tr></thead><tbody>"]
    for item in items:
        claims = (item.get("explanation", {}).get("faithfulness") or {}).get("claims", [])
        unsupported = any(not c.get("supported") for c in claims)
        excluded = item.get("excluded", {})
        scores = []
        for metric in metrics:
            value = item.get(metric)
            if value is None:
                continue
            if metric in excluded:
                scores.append(f"<dt class='excluded'>{_e(metric)}</dt><dd class='excluded' "
                              f"title='not counted: {_e(excluded[metric])}'>({float(value):.2f})</dd>")
            else:
                scores.append(f"<dt>{_e(metric)}</dt><dd data-metric='{_e(metric)}'>{float(value):.2f}</dd>")
        tags = ""
        if item.get("type") is not None:
            tags += f"<span class='tag'>{_e(item['type'])}</span>"
        if item.get("refused"):
            tags += "<span class='tag'>refused</span>"
        if item.get("answerable") is False:
            tags += "<span class='tag'>unanswerable</span>"
        out.append(
            f"<tr data-id='{_e(item.get('id'))}' data-unsupported='{int(unsupported)}'>"
            f"<td>{_e(item.get('id'))}</td><td>{_e(item.get('user_input', ''))}{tags}{_reference(item)}</td>"
            f"<td>{_response(item, claims)}{_sources(item)}</td><td><dl class='scores'>{''.join(scores)}</dl></td>"
            "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _reference(item: Mapping[str, Any]) -> str:
    if not item.get("reference"):
        return ""
    return f"<div class='muted'>reference: {_e(item['reference'])}</div>"


def _response(item: Mapping[str, Any], claims: Sequence[Mapping[str, Any]]) -> str:
    """The response with each judged claim marked supported or unsupported (the reason on hover and below)."""
    text = str(item.get("response") or "")
    if not text.strip():
        return "<div class='response muted'>(empty response)</div>"
    if not claims:
        return f"<div class='response'>{_e(text)}</div>"
    spans = []
    for claim in claims:
        css = "supported" if claim.get("supported") else "unsupported"
        source = claim.get("source")
        cite = f" <span class='muted'>[{int(source) + 1}]</span>" if claim.get("supported") and source is not None \
            else ""
        title = _e(claim.get("reason") or ("supported by source " + str(int(source) + 1) if source is not None
                                           else "supported"))
        spans.append(f"<span class='claim {css}' title='{title}'>{_e(claim.get('claim', ''))}</span>{cite}")
        if not claim.get("supported") and claim.get("reason"):
            spans.append(f"<div class='reason'>✗ {_e(claim['reason'])}</div>")
    return f"<div class='response'>{' '.join(spans)}</div>"


def _sources(item: Mapping[str, Any]) -> str:
    contexts = list(item.get("retrieved_contexts") or [])
    if not contexts:
        return "<div class='muted'>no sources</div>"
    names = list(item.get("retrieved_context_sources") or item.get("retrieved_context_ids") or [])
    quotes = []
    for i, context in enumerate(contexts):
        name = f" <span class='muted'>{_e(names[i])}</span>" if i < len(names) else ""
        quotes.append(f"<div class='source'><b>[{i + 1}]</b>{name}<blockquote>{_e(context)}</blockquote></div>")
    return f"<details><summary>{len(contexts)} sources</summary>{''.join(quotes)}</details>"
