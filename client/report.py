"""A static HTML report of one run: sentiment bars per entity, summaries, strengths, generator timings.

Self-contained (inline SVG and CSS, no scripts), so it opens from a file or any static host. Every
text from the input or the generator is HTML-escaped.
"""
from html import escape

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; width: 100%; margin: 1em 0; }
td, th { border-bottom: 1px solid #ddd; padding: 6px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } .num { text-align: right; white-space: nowrap; }
.pos { color: #1a7f37; } .neg { color: #c62828; } small { color: #666; }
"""


def _sentiment_bar(ratio: dict[str, float], width: int = 220) -> str:
    positive = round(ratio.get("positive", 0.0) * width)
    return (f'<svg width="{width}" height="14" role="img" aria-label="{ratio.get("positive", 0):.0%} positive">'
            f'<rect width="{positive}" height="14" fill="#2da44e"/>'
            f'<rect x="{positive}" width="{width - positive}" height="14" fill="#e5534b"/></svg>')


def _ttft_chart(calls: list[dict], sla_ttft_s: float, width: int = 1000) -> str:
    """One bar per generated call (time to first token), with the SLA as a line."""
    calls = [c for c in calls if not c["cached"]]
    if not calls:
        return "<p>No generator call ran (everything came from the cache).</p>"
    top = max(max(c["ttft_s"] for c in calls), sla_ttft_s) * 1.1
    step = width / len(calls)
    bars = "".join(
        f'<rect x="{i * step:.1f}" y="{120 - 120 * c["ttft_s"] / top:.1f}" width="{max(step - 1, 1):.1f}" '
        f'height="{120 * c["ttft_s"] / top:.1f}" fill="{"#2da44e" if c["ttft_s"] < sla_ttft_s else "#e5534b"}">'
        f'<title>{escape(c["kind"])}: {c["ttft_s"]:.2f} s, {c["prompt_tokens"]} prompt tokens</title></rect>'
        for i, c in enumerate(calls))
    sla_y = 120 - 120 * sla_ttft_s / top
    return (f'<svg width="{width}" height="130">{bars}<line x1="0" x2="{width}" y1="{sla_y:.1f}" y2="{sla_y:.1f}" '
            f'stroke="#333" stroke-dasharray="4"/><text x="4" y="{sla_y - 3:.1f}" font-size="11">SLA {sla_ttft_s} s'
            f'</text></svg>')


def _items(values: list[str], css: str) -> str:
    return "<br>".join(f'<span class="{css}">{escape(v)}</span>' for v in values) or "<small>none</small>"


def render(results: list[dict], summary: dict, calls: list[dict], title: str) -> str:
    """The report's HTML for entity results (EntityAnalysis.to_json()), the run summary and the calls."""
    rows = "".join(
        f"<tr><td><b>{escape(r['entity_name'] or r['entity_id'])}</b><br><small>{len(r['reviews'])} reviews"
        f"{' · cached' if r['metrics'].get('from_cache') else ''}</small></td>"
        f"<td>{_sentiment_bar(r['sentiment_ratio'])}<br><small>{r['sentiment_ratio'].get('positive', 0):.0%} positive"
        f"</small></td><td>{_items(r['summary']['positive'], 'pos')}</td><td>{_items(r['summary']['negative'], 'neg')}"
        f"</td><td>{_items(r['strengths'], '')}</td>"
        f"<td><small>{escape((r['representative'].get('positive') or r['representative'].get('negative') or [''])[0])}"
        f"</small></td></tr>"
        for r in results)
    figures = "".join(f"<tr><th>{escape(k)}</th><td class='num'>{escape(str(v))}</td></tr>" for k, v in summary.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{_STYLE}</style></head>
<body><h1>{escape(title)}</h1>
<table><tr><th>entity</th><th>sentiment</th><th>praised</th><th>criticised</th><th>strengths</th>
<th>most representative review</th></tr>{rows}</table>
<h2>Generator: time to first token per call</h2>{_ttft_chart(calls, summary.get('sla_ttft_s', 2.0))}
<h2>Run</h2><table>{figures}</table>
</body></html>
"""
