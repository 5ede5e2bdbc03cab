"""A static HTML report of one run: per entity its sentiment, aspects with counts and quotes,
summary, strengths and weaknesses; then the generator's timings and the run's figures.

Self-contained (inline SVG and CSS, no scripts: quotes expand with <details>), so it opens from a
file or any static host. Every text from the input or the generator is HTML-escaped.

Stable hooks for tests and scrapers: each entity is a `section.entity[data-entity]`; each aspect a
`details.aspect` with `data-aspect`, `data-polarity`, `data-count` (reviews), `data-mentions` and
`data-share`; each quote a `.quote` with `data-review` (index into the result's `reviews`),
`data-start` and `data-end`, its text in `.quote-text`; strengths and weaknesses are `.comparison-item`
with `data-kind`; the summary is `.summary`, the no-rivals note `.comparison-note`. Review numbers
shown to the reader count from 1.
"""
from html import escape

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; width: 100%; margin: 1em 0; }
td, th { border-bottom: 1px solid #ddd; padding: 6px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } .num { text-align: right; white-space: nowrap; }
.pos { color: #1a7f37; } .neg { color: #c62828; } small { color: #666; }
section.entity { border-top: 2px solid #ddd; padding: .5em 0 1em; }
section.entity h2 { margin-bottom: .2em; }
.aspects { display: grid; grid-template-columns: 1fr 1fr; gap: 0 2em; }
details.aspect > summary, details.evidence > summary { cursor: pointer; padding: 2px 0; }
.aspect-name { display: inline-block; min-width: 11em; font-weight: 600; }
.count { white-space: nowrap; }
ul.quotes { margin: .2em 0 .6em; padding-left: 1.2em; }
.quote-text { white-space: pre-wrap; font-style: italic; }
.review-number { color: #666; font-size: 12px; margin-right: .4em; }
.summary { font-size: 15px; }
.comparison-note { color: #666; }
"""

_POLARITY_HEADINGS = {"positive": ("Praised", "pos"), "negative": ("Criticised", "neg")}
_BAR_COLOURS = {"positive": "#2da44e", "negative": "#e5534b"}


def _text(value: str) -> str:
    # HTML parsing turns a carriage return into a line feed; as a character reference it survives,
    # so a quote's text in the page stays equal to its review's text at the quote's offsets.
    return escape(value).replace("\r", "&#13;")


def _percent(share: float) -> str:
    return f"{round(share * 100)} %"


def _sentiment_bar(ratio: dict[str, float], width: int = 220) -> str:
    positive = round(ratio.get("positive", 0.0) * width)
    return (f'<svg width="{width}" height="14" role="img" aria-label="{ratio.get("positive", 0):.0%} positive">'
            f'<rect width="{positive}" height="14" fill="#2da44e"/>'
            f'<rect x="{positive}" width="{width - positive}" height="14" fill="#e5534b"/></svg>')


def _share_bar(share: float, polarity: str, width: int = 120) -> str:
    """A bar as long as the share of the entity's reviews (full width = every review)."""
    return (f'<svg class="share-bar" width="{width}" height="10" role="img" aria-label="{_percent(share)}">'
            f'<rect width="{width}" height="10" fill="#eee"/>'
            f'<rect width="{share * width:.1f}" height="10" fill="{_BAR_COLOURS[polarity]}"/></svg>')


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


def _quotes(evidence: list[dict]) -> str:
    """Verbatim sentences, each with the number of the review it comes from."""
    return '<ul class="quotes">' + "".join(
        f'<li class="quote" data-review="{q["review"]}" data-start="{q["start"]}" data-end="{q["end"]}">'
        f'<span class="review-number">review {q["review"] + 1}</span>'
        f'<span class="quote-text">{_text(q["text"])}</span></li>'
        for q in evidence) + "</ul>"


def _aspect(aspect: dict, review_count: int) -> str:
    figures = f'{aspect["reviews"]} review{"s" if aspect["reviews"] != 1 else ""} · {_percent(aspect["share"])}'
    how = (f'{aspect["mentions"]} opinion sentences in {aspect["reviews"]} of {review_count} reviews'
           f'{"; named from a key phrase" if aspect["named_by"] == "key phrase" else ""}')
    return (f'<details class="aspect" data-aspect="{_text(aspect["name"])}" data-polarity="{aspect["polarity"]}" '
            f'data-count="{aspect["reviews"]}" data-mentions="{aspect["mentions"]}" data-share="{aspect["share"]}">'
            f'<summary><span class="aspect-name">{_text(aspect["name"])}</span> '
            f'{_share_bar(aspect["share"], aspect["polarity"])} '
            f'<span class="count" title="{escape(how)}">{figures}</span> '
            f'<small class="mentions">{aspect["mentions"]} mentions</small></summary>'
            f'{_quotes(aspect["evidence"])}</details>')


def _aspects(result: dict) -> str:
    """Praised and criticised aspects side by side, each group in the result's order (most-mentioned first)."""
    columns = []
    for polarity, (heading, css) in _POLARITY_HEADINGS.items():
        aspects = [a for a in result["aspects"] if a["polarity"] == polarity]
        body = "".join(_aspect(a, len(result["reviews"])) for a in aspects) or "<small>none</small>"
        columns.append(f'<div class="polarity" data-polarity="{polarity}"><h3 class="{css}">{heading}</h3>{body}</div>')
    return f'<div class="aspects">{"".join(columns)}</div>'


def _comparison(result: dict) -> str:
    """Strengths and weaknesses with their figures and expandable evidence, or why there are none."""
    comparison = result["comparison"]
    if not comparison["rivals"]:
        return f'<p class="comparison-note">{_text(comparison["note"] or "No other entity to compare with.")}</p>'
    blocks = []
    for kind, css in (("strengths", "pos"), ("weaknesses", "neg")):
        items = "".join(
            f'<li class="comparison-item" data-kind="{kind}" data-aspect-name="{_text(item["aspect"])}" '
            f'data-share="{item["share"]}" data-rival-share="{item["rival_share"]}">'
            f'<span class="{css}">{_text(item["text"])}</span>'
            + (f'<details class="evidence"><summary><small>{len(item["evidence"])} quotes</small></summary>'
               f'{_quotes(item["evidence"])}</details>' if item["evidence"] else "")
            + "</li>"
            for item in result[kind])
        blocks.append(f'<h3>{kind.capitalize()}</h3>' + (f"<ul>{items}</ul>" if items else "<small>none</small>"))
    rivals = comparison["rivals"]
    return (f'<p><small>Compared with {rivals} other {"entity" if rivals == 1 else "entities"} '
            f'({comparison["rival_reviews"]} reviews).</small></p>' + "".join(blocks))


def _representative(result: dict) -> str:
    firsts = [(label, quoted[0]) for label, quoted in sorted(result["representative"].items(), reverse=True) if quoted]
    return "".join(f'<p><small>Most representative {label} review: </small>'
                   f'<small class="quote-text">{_text(text)}</small></p>' for label, text in firsts)


def _entity(result: dict) -> str:
    ratio = result["sentiment_ratio"]
    summary = (f'<p class="summary">{_text(result["summary"])}</p>' if result["summary"]
               else '<p class="summary"><small>No summary: no aspect was found.</small></p>')
    return (f'<section class="entity" data-entity="{_text(result["entity_id"])}">'
            f'<h2>{_text(result["entity_name"] or result["entity_id"])}</h2>'
            f'<p><small>{len(result["reviews"])} reviews'
            f'{" · cached" if result["metrics"].get("from_cache") else ""}</small></p>'
            f'<p class="sentiment">{_sentiment_bar(ratio)} <small>{_percent(ratio["positive"])} positive · '
            f'{_percent(ratio["negative"])} negative</small></p>'
            f'{summary}{_aspects(result)}{_comparison(result)}{_representative(result)}</section>')


def render(results: list[dict], summary: dict, calls: list[dict], title: str) -> str:
    """The report's HTML for entity results (EntityAnalysis.to_json()), the run summary and the calls."""
    figures = "".join(f"<tr><th>{escape(k)}</th><td class='num'>{escape(str(v))}</td></tr>" for k, v in summary.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{_STYLE}</style></head>
<body><h1>{escape(title)}</h1>
{"".join(_entity(r) for r in results)}
<h2>Generator: time to first token per call</h2>{_ttft_chart(calls, summary.get('sla_ttft_s', 2.0))}
<h2>Run</h2><table>{figures}</table>
</body></html>
"""
