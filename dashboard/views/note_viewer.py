"""Note viewer: the de-identified text with detected findings highlighted, negated ones struck through."""

from __future__ import annotations

import html
import re

import streamlit as st

AFFIRMED_STYLE = "background:#ffe08a;padding:0 2px;border-radius:3px"
NEGATED_STYLE = "background:#d7e3f4;text-decoration:line-through;padding:0 2px;border-radius:3px"


def highlight_findings(text: str, findings: list[dict]) -> str:
    """HTML of ``text`` (escaped) with each finding marked; negated findings carry a "negated" title.

    Longer findings are matched first so "chest pain" wins over "pain"; a span
    already marked is not marked again.
    """
    spans: list[tuple[int, int, bool]] = []
    for f in sorted(findings, key=lambda f: -len(str(f.get("text", "")))):
        needle = str(f.get("text", "")).strip()
        if not needle:
            continue
        for m in re.finditer(re.escape(needle), text, flags=re.IGNORECASE):
            if all(m.end() <= s or m.start() >= e for s, e, _ in spans):
                spans.append((m.start(), m.end(), bool(f.get("negated"))))
    out, pos = [], 0
    for s, e, negated in sorted(spans):
        out.append(html.escape(text[pos:s]))
        style, title = (NEGATED_STYLE, "negated finding") if negated else (AFFIRMED_STYLE, "finding")
        out.append(f'<mark style="{style}" title="{title}">{html.escape(text[s:e])}</mark>')
        pos = e
    out.append(html.escape(text[pos:]))
    return "".join(out).replace("\n", "<br>")


def render_note(record: dict, key: str = "note") -> None:
    """Draw the note's header, highlighted text and its findings list."""
    text = str(record.get("text", ""))
    findings = [f for f in record.get("findings", []) if isinstance(f, dict)]
    st.caption(f"{record.get('note_type', 'note')} · {record.get('date', 'date unknown')} (shifted)")
    st.markdown(f'<div style="line-height:1.6">{highlight_findings(text, findings)}</div>', unsafe_allow_html=True)
    if findings:
        st.markdown("**Findings**")
        for f in findings:
            label = f"~~{f.get('text')}~~ — negated" if f.get("negated") else f"**{f.get('text')}**"
            st.markdown(f"- {label} ({f.get('section') or 'no section'})")
    else:
        st.caption("No findings were detected in this note.")
