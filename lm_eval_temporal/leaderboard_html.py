"""The leaderboard (:class:`lm_eval_temporal.leaderboard.Board`) as one self-contained HTML page.

Inline CSS and a few lines of inline JavaScript (click a header to sort by it; missing values
stay last either way); no network asset, so the page works from a CI artefact or offline. Every
piece of text is escaped (``html.escape``): model names, task names and problems come from
files a submitter wrote.
"""

from __future__ import annotations

from html import escape

from lm_eval_temporal.leaderboard import FIELDS, LEGEND, METRICS, MISSING, Board, Row, display

__all__ = ["to_html"]

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em;color:#1f2328}
h1{font-size:1.4em;margin:0 0 .5em}
.notes{width:fit-content;max-width:70em;background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.5em 1em .5em 2em;margin:0 0 1em}
.legend{color:#59636e;font-size:.9em;max-width:70em}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #d1d9e0;padding:4px 8px;vertical-align:top}
thead th{background:#f6f8fa;position:sticky;top:0}
th[data-col]{cursor:pointer;user-select:none;white-space:nowrap}
th[data-col]:hover{background:#eaeef2}
th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.missing{color:#8c959f;text-align:center}
.first{border-left:2px solid #59636e}
tbody tr:nth-child(even){background:#f6f8fa}
.badge{display:inline-block;border-radius:10px;padding:0 7px;font-size:12px;font-weight:600;white-space:nowrap}
.ok{background:#dafbe1;color:#1a7f37}.bad{background:#ffebe9;color:#cf222e}
.why{color:#cf222e;font-size:12px;max-width:28em}
.model{max-width:26em;word-break:break-word}
"""

# Sorts the body rows by the clicked header's column: numbers by data-v, text by its content;
# cells without data-v (missing values) go last in both directions.
_JS = """
document.querySelectorAll("th[data-col]").forEach(function(th){th.addEventListener("click",function(){
 var i=+th.dataset.col,tb=document.querySelector("#board tbody"),desc=!th.classList.contains("desc");
 document.querySelectorAll("th[data-col]").forEach(function(h){h.classList.remove("asc","desc")});
 th.classList.add(desc?"desc":"asc");
 Array.from(tb.rows).sort(function(a,b){var u=a.cells[i].dataset.v,w=b.cells[i].dataset.v;
  if(u===undefined||w===undefined)return(u===undefined)-(w===undefined);
  var c=th.dataset.num?u-w:u.localeCompare(w);return desc?-c:c;}).forEach(function(r){tb.appendChild(r)});
});});
"""


def _status(row: Row) -> str:
    if row.verified:
        return '<td data-v="0"><span class="badge ok">verified</span></td>'
    why = "; ".join(row.problems)
    return (f'<td data-v="1" title="{escape(why)}"><span class="badge bad">unverified</span>'
            f'<div class="why">{escape(why)}</div></td>')


def _row(row: Row, columns: list[str]) -> str:
    tds = [f'<td class="{"model" if f == "model" else "field"}" data-v="{escape(row.fields[f])}">'
           f'{escape(row.fields[f])}</td>' for f in FIELDS[:-1]]
    tds.append(_status(row))
    for col in columns:
        cell = row.cells.get(col)
        for j, (metric, _) in enumerate(METRICS):
            value = cell.values[metric] if cell else None
            first = " first" if j == 0 else ""
            if value is None:
                tds.append(f'<td class="missing{first}">{MISSING}</td>')
                continue
            title = f"{cell.run} · samples {cell.samples} · schedule {cell.schedule}"
            tds.append(f'<td class="num{first}" data-v="{value!r}" title="{escape(title)}">'
                       f'{escape(display(metric, value))}</td>')
    return "<tr>" + "".join(tds) + "</tr>"


def to_html(board: Board) -> str:
    """One page: the notes (protocols or unverified runs mixed in a column), a legend and the
    sortable table (two header rows: tasks, then their metrics)."""
    n = len(FIELDS)
    top = "".join(f'<th rowspan="2" data-col="{i}">{escape(f)}</th>' for i, f in enumerate(FIELDS))
    top += "".join(f'<th colspan="{len(METRICS)}" class="first">{escape(c)}</th>' for c in board.columns)
    sub = "".join(f'<th data-col="{n + k * len(METRICS) + j}" data-num="1"{" class=first" if j == 0 else ""} '
                  f'title="{escape(name)}">{escape(short)}</th>'
                  for k, _ in enumerate(board.columns) for j, (name, short) in enumerate(METRICS))
    notes = ("<ul class=\"notes\">" + "".join(f"<li>{escape(x)}</li>" for x in board.notes) + "</ul>"
             if board.notes else "")
    body = "\n".join(_row(r, board.columns) for r in board.rows)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>lm-eval-temporal leaderboard</title><style>{_CSS}</style></head><body>\n"
            f"<h1>lm-eval-temporal leaderboard</h1>\n{notes}<p class=\"legend\">{escape(LEGEND)}</p>\n"
            f"<table id=\"board\"><thead><tr>{top}</tr><tr>{sub}</tr></thead>\n<tbody>\n{body}\n</tbody></table>\n"
            f"<script>{_JS}</script>\n</body></html>\n")
