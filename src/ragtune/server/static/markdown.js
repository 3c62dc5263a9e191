// Safe Markdown for answers: paragraphs, lists, tables, code, quotes, emphasis, links and [n] citations, built as
// DOM nodes with textContent (never innerHTML), so nothing a model or a document writes can run in the page.
"use strict";

const Markdown = (() => {
  const FENCE = /^\s*(```|~~~)/;
  const BULLET = /^\s*[-*+]\s+(.*)$/;
  const NUMBERED = /^\s*(\d+)[.)]\s+(.*)$/;
  const HEADING = /^\s*(#{1,6})\s+(.*)$/;
  const QUOTE = /^\s*>\s?(.*)$/;
  const TABLE_RULE = /^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$/;
  // A model often opens with "A:" (or "Answer:", "答：") copied from a few-shot prompt.
  const LEADING_LABEL = /^\s*(?:A|Answer|答|回答|答案)\s*[:：]\s*/i;
  const INLINE = /(`[^`]+`)|(\*\*[^*]+\*\*|__[^_]+__)|(\*[^*\s][^*]*\*|_[^_\s][^_]*_)|(\[\d+\])|(\[[^\]]+\]\((https?:\/\/[^)\s]+)\))/;

  function el(tag, className) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    return node;
  }

  // Inline spans: code, bold, italic, citations [n] (onCite(n) makes them buttons), http(s) links.
  function inline(parent, text, onCite) {
    let rest = text;
    while (rest) {
      const m = INLINE.exec(rest);
      if (!m) { parent.append(rest); return; }
      if (m.index) parent.append(rest.slice(0, m.index));
      const [all, code, bold, italic, cite, link, href] = m;
      if (code) { const c = el("code"); c.textContent = code.slice(1, -1); parent.append(c); }
      else if (bold) { const b = el("strong"); inline(b, bold.slice(2, -2), onCite); parent.append(b); }
      else if (italic) { const i = el("em"); inline(i, italic.slice(1, -1), onCite); parent.append(i); }
      else if (cite) {
        const n = Number(cite.slice(1, -1));
        if (onCite && onCite.has(n)) {
          const a = el("a", "cite");
          a.href = `#source-${n}`;
          a.textContent = cite;
          a.addEventListener("click", (event) => { event.preventDefault(); onCite.open(n); });
          parent.append(a);
        } else parent.append(cite);
      } else if (link) {
        const a = el("a");
        a.href = href; a.rel = "noopener noreferrer nofollow"; a.target = "_blank";
        a.textContent = link.slice(1, link.indexOf("]("));
        parent.append(a);
      }
      rest = rest.slice(m.index + all.length);
    }
  }

  function cells(line) {
    const trimmed = line.trim().replace(/^\|/, "").replace(/\|$/, "");
    return trimmed.split("|").map((c) => c.trim());
  }

  function table(lines, onCite) {
    const wrap = el("div", "table-wrap");
    const t = el("table");
    const head = el("thead");
    const row = el("tr");
    for (const c of cells(lines[0])) { const th = el("th"); inline(th, c, onCite); row.append(th); }
    head.append(row);
    const body = el("tbody");
    for (const line of lines.slice(2)) {
      const tr = el("tr");
      for (const c of cells(line)) { const td = el("td"); inline(td, c, onCite); tr.append(td); }
      body.append(tr);
    }
    t.append(head, body);
    wrap.append(t);
    return wrap;
  }

  // Render ``text`` into a fragment. ``onCite`` ({has(n), open(n)}) turns [n] into links to sources.
  function render(text, onCite) {
    const out = document.createDocumentFragment();
    const lines = String(text || "").replace(LEADING_LABEL, "").replace(/\r\n?/g, "\n").split("\n");
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (!line.trim()) { i++; continue; }
      if (FENCE.test(line)) {
        const fence = line.trim().slice(0, 3);
        const body = [];
        for (i++; i < lines.length && !lines[i].trim().startsWith(fence); i++) body.push(lines[i]);
        i++;
        const pre = el("pre"); const code = el("code"); code.textContent = body.join("\n"); pre.append(code);
        out.append(pre);
        continue;
      }
      if (line.includes("|") && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1])) {
        const rows = [line, lines[i + 1]];
        for (i += 2; i < lines.length && lines[i].includes("|") && lines[i].trim(); i++) rows.push(lines[i]);
        out.append(table(rows, onCite));
        continue;
      }
      const heading = HEADING.exec(line);
      if (heading) {
        const h = el("p", "md-heading"); const s = el("strong"); inline(s, heading[2], onCite); h.append(s);
        out.append(h); i++;
        continue;
      }
      if (BULLET.test(line) || NUMBERED.test(line)) {
        const numbered = !BULLET.test(line);
        const list = el(numbered ? "ol" : "ul");
        const first = NUMBERED.exec(line);
        if (numbered && first && first[1] !== "1") list.start = Number(first[1]);
        for (; i < lines.length; i++) {
          const m = numbered ? NUMBERED.exec(lines[i]) : BULLET.exec(lines[i]);
          if (m) { const li = el("li"); inline(li, numbered ? m[2] : m[1], onCite); list.append(li); }
          else if (lines[i].trim() && /^\s{2,}/.test(lines[i]) && list.lastChild) {
            list.lastChild.append(" "); inline(list.lastChild, lines[i].trim(), onCite);
          } else break;
        }
        out.append(list);
        continue;
      }
      if (QUOTE.test(line)) {
        const q = el("blockquote");
        const parts = [];
        for (; i < lines.length && QUOTE.test(lines[i]); i++) parts.push(QUOTE.exec(lines[i])[1]);
        inline(q, parts.join(" "), onCite);
        out.append(q);
        continue;
      }
      const p = el("p");
      const parts = [];
      for (; i < lines.length && lines[i].trim() && !FENCE.test(lines[i]) && !BULLET.test(lines[i]) &&
             !NUMBERED.test(lines[i]) && !HEADING.test(lines[i]) && !QUOTE.test(lines[i]); i++) parts.push(lines[i].trim());
      parts.forEach((part, n) => { if (n) p.append(el("br")); inline(p, part, onCite); });
      out.append(p);
    }
    return out;
  }

  return { render, LEADING_LABEL };
})();
