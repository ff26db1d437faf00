// md.js — a small, safe Markdown renderer for model replies.
//
// Safety rule: model text only ever reaches the page through textContent / createTextNode
// and through attribute values we have validated (link hrefs: http, https and mailto only).
// There is no innerHTML anywhere, so raw HTML in a reply (<script>, <img onerror>, ...) is
// shown as the literal text it is. Markdown images become links (never fetched: the page
// works offline and the Content-Security-Policy would block them anyway).
//
// Supported: ATX headings, paragraphs (single newlines are line breaks, as in chat), fenced
// code blocks with a copy button, inline code, **strong**, *em*, ~~del~~, links, autolinks
// and bare URLs, block quotes, nested ordered/unordered lists, GFM tables, rules, and a
// leading <think>…</think> section shown collapsed. Parsing is linear-ish; inline emphasis
// is skipped for very long paragraphs so a hostile reply cannot stall the page.

const MAX_DEPTH = 12;          // nesting of quotes/lists before we fall back to plain text
const MAX_INLINE_EMPH = 8000;  // paragraph length above which emphasis is not parsed

const el = (tag, cls, text) => {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (text !== undefined) n.textContent = text;
  return n;
};

// Returns the href to use, or null when the URL is not one we allow.
export function safeHref(raw) {
  const s = String(raw).trim();
  if (!/^(https?:\/\/|mailto:)/i.test(s)) return null;
  try {
    const u = new URL(s);
    if (u.protocol === 'http:' || u.protocol === 'https:' || u.protocol === 'mailto:') return u.href;
  } catch (_) { /* not a URL */ }
  return null;
}

function link(href, childrenFn) {
  const a = el('a');
  a.href = href;
  a.target = '_blank';
  a.rel = 'noopener noreferrer nofollow';
  childrenFn(a);
  return a;
}

// ---- inline ----------------------------------------------------------------------------

const SPECIAL = '\\\n`*_~[!<hH';
const ESCAPABLE = '\\`*_{}[]()#+-.!|~<>"\'';
// (the URL may hold balanced parentheses, one level: [docs](https://x.org/a_(b)))
const RE_LINK = /^\[((?:[^\[\]\\]|\\.){0,500})\]\(\s*<?((?:[^\s()<>]|\([^\s()<>]{0,2000}\)){0,2000})>?(?:\s+"[^"]{0,300}")?\s*\)/;
const RE_AUTOLINK = /^<((?:https?:\/\/|mailto:)[^\s<>]{1,2000})>/i;
const RE_BARE = /^https?:\/\/[^\s<>"'`]{1,2000}/i;

// Emphasis: opener must be followed by non-space, closer preceded by non-space. The span is
// bounded (500 chars) so a failed match costs O(500), keeping a paragraph linear.
const EMPH = [
  ['***', 'em,strong', /^\*\*\*(?=\S)([\s\S]{0,500}?\S)\*\*\*/],
  ['**', 'strong', /^\*\*(?=\S)([\s\S]{0,500}?\S)\*\*/],
  ['__', 'strong', /^__(?=\S)([\s\S]{0,500}?\S)__(?![A-Za-z0-9])/],
  ['~~', 'del', /^~~(?=\S)([\s\S]{0,500}?\S)~~/],
  ['*', 'em', /^\*(?=[^\s*])([\s\S]{0,500}?[^\s*])\*(?!\*)/],
  ['_', 'em', /^_(?=[^\s_])([\s\S]{0,500}?[^\s_])_(?![A-Za-z0-9])/],
];

function inline(text, parent, opts) {
  let buf = '';
  const flush = () => { if (buf) { parent.appendChild(document.createTextNode(buf)); buf = ''; } };
  const emph = opts.emph && text.length <= MAX_INLINE_EMPH;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (!SPECIAL.includes(c)) { buf += c; i++; continue; }   // fast path for plain text
    const rest = text.slice(i);
    if (c === '\\' && i + 1 < text.length && ESCAPABLE.includes(text[i + 1])) {
      buf += text[i + 1]; i += 2; continue;
    }
    if (c === '\n') { flush(); parent.appendChild(el('br')); i++; continue; }
    if (c === '`') {
      const run = /^`+/.exec(rest)[0].length;
      const close = text.indexOf('`'.repeat(run), i + run);
      if (close > 0 && text[close + run] !== '`') {
        flush();
        let code = text.slice(i + run, close).replace(/\n/g, ' ');
        if (/^ .* $/.test(code)) code = code.slice(1, -1);
        parent.appendChild(el('code', null, code));
        i = close + run; continue;
      }
      buf += '`'.repeat(run); i += run; continue;
    }
    if (emph && (c === '*' || c === '_' || c === '~')) {
      // '_' inside a word (snake_case) is not emphasis.
      const wordBefore = i > 0 && /[A-Za-z0-9]/.test(text[i - 1]);
      let done = false;
      for (const [mark, tag, re] of EMPH) {
        if (!rest.startsWith(mark) || (mark[0] === '_' && wordBefore)) continue;
        const m = re.exec(rest);
        if (!m) continue;
        flush();
        const [outer, innerTag] = tag.split(',');
        const n = el(outer);
        inline(m[1], innerTag ? n.appendChild(el(innerTag)) : n, opts);
        parent.appendChild(n);
        i += m[0].length; done = true; break;
      }
      if (done) continue;
      const run = /^([*_~])\1*/.exec(rest)[0].length;
      buf += rest.slice(0, run); i += run; continue;
    }
    if ((c === '[' || (c === '!' && text[i + 1] === '[')) && opts.links) {
      const img = c === '!';
      const m = RE_LINK.exec(img ? rest.slice(1) : rest);
      if (m) {
        const href = safeHref(m[2]);
        const len = m[0].length + (img ? 1 : 0);
        if (href) {
          flush();
          const label = img ? (m[1] || 'image') : m[1];
          parent.appendChild(link(href, (a) => {
            if (img) a.textContent = label;
            else inline(label, a, { ...opts, links: false });
          }));
        } else {
          buf += rest.slice(0, len);   // disallowed scheme: the whole thing stays text
        }
        i += len; continue;
      }
    }
    if (c === '<' && opts.links) {
      const m = RE_AUTOLINK.exec(rest);
      const href = m && safeHref(m[1]);
      if (href) {
        flush();
        parent.appendChild(link(href, (a) => { a.textContent = m[1]; }));
        i += m[0].length; continue;
      }
    }
    if ((c === 'h' || c === 'H') && opts.links && (i === 0 || /[\s(]/.test(text[i - 1]))) {
      const m = RE_BARE.exec(rest);
      if (m) {
        const url = trimUrl(m[0]);
        const href = safeHref(url);
        if (href) {
          flush();
          parent.appendChild(link(href, (a) => { a.textContent = url; }));
          i += url.length; continue;
        }
      }
    }
    buf += c; i++;
  }
  flush();
}

// A bare URL ends before trailing punctuation, but keeps a ")" that closes a "(" inside it
// (https://en.wikipedia.org/wiki/Foo_(bar)).
function trimUrl(url) {
  let open = 0, close = 0;
  for (const ch of url) { if (ch === '(') open++; else if (ch === ')') close++; }
  let end = url.length;
  while (end > 0 && '.,;:!?)]'.includes(url[end - 1])) {
    if (url[end - 1] === ')') { if (open >= close) break; close--; }
    end--;
  }
  return url.slice(0, end);
}

const inlineInto = (text, parent) => inline(text, parent, { emph: true, links: true });

// ---- blocks ----------------------------------------------------------------------------

const RE_FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const RE_HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const RE_HR = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const RE_QUOTE = /^ {0,3}> ?(.*)$/;
const RE_ITEM = /^( *)([-*+]|\d{1,9}[.)])([ \t]+(.*))?$/;
const RE_TABLE_SEP = /^ *\|? *:?-+:? *(\| *:?-+:? *)*\|? *$/;

const indentOf = (line) => /^ */.exec(line)[0].length;
const isBlank = (line) => /^\s*$/.test(line);

function startsBlock(line) {
  return RE_FENCE.test(line) || RE_HEADING.test(line) || RE_HR.test(line) ||
    RE_QUOTE.test(line) || RE_ITEM.test(line);
}

function splitRow(line) {
  let s = line.trim();
  if (s.startsWith('|')) s = s.slice(1);
  if (s.endsWith('|') && !s.endsWith('\\|')) s = s.slice(0, -1);
  const cells = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && s[i + 1] === '|') { cur += '|'; i++; continue; }
    if (s[i] === '|') { cells.push(cur.trim()); cur = ''; continue; }
    cur += s[i];
  }
  cells.push(cur.trim());
  return cells;
}

// A table needs a header row with pipes and a delimiter row with the same column count.
function isTableStart(lines, i) {
  return lines[i].includes('|') && i + 1 < lines.length && RE_TABLE_SEP.test(lines[i + 1]) &&
    lines[i + 1].includes('-') && splitRow(lines[i]).length === splitRow(lines[i + 1]).length;
}

function codeBlock(lang, text) {
  const wrap = el('div', 'code');
  const head = el('div', 'code-head');
  head.appendChild(el('span', null, lang || 'text'));
  const btn = el('button', 'copy-code', 'Copy');
  btn.type = 'button';
  head.appendChild(btn);
  const pre = el('pre');
  const code = el('code', null, text);
  if (lang) code.dataset.lang = lang;
  pre.appendChild(code);
  wrap.append(head, pre);
  return wrap;
}

function table(lines, i, parent) {
  const head = splitRow(lines[i]);
  const aligns = splitRow(lines[i + 1]).map((c) =>
    c.startsWith(':') && c.endsWith(':') ? 'center' : c.endsWith(':') ? 'right' : c.startsWith(':') ? 'left' : '');
  const wrap = el('div', 'table-wrap');
  const t = el('table');
  const thead = el('thead');
  const tr = el('tr');
  head.forEach((h, k) => {
    const th = el('th');
    if (aligns[k]) th.style.textAlign = aligns[k];
    inlineInto(h, th);
    tr.appendChild(th);
  });
  thead.appendChild(tr);
  t.appendChild(thead);
  const tbody = el('tbody');
  let j = i + 2;
  for (; j < lines.length && !isBlank(lines[j]) && lines[j].includes('|'); j++) {
    const row = splitRow(lines[j]);
    const r = el('tr');
    for (let k = 0; k < head.length; k++) {
      const td = el('td');
      if (aligns[k]) td.style.textAlign = aligns[k];
      inlineInto(row[k] || '', td);
      r.appendChild(td);
    }
    tbody.appendChild(r);
  }
  if (tbody.firstChild) t.appendChild(tbody);
  wrap.appendChild(t);
  parent.appendChild(wrap);
  return j;
}

// Parses a list starting at lines[i]; returns the index after it.
function list(lines, i, parent, depth) {
  const first = RE_ITEM.exec(lines[i]);
  const base = first[1].length;
  const ordered = /\d/.test(first[2]);
  const node = el(ordered ? 'ol' : 'ul');
  if (ordered) {
    const start = parseInt(first[2], 10);
    if (start !== 1) node.start = start;
  }
  let loose = false;
  const items = [];
  while (i < lines.length) {
    const m = RE_ITEM.exec(lines[i]);
    if (!m || m[1].length !== base || /\d/.test(m[2]) !== ordered) break;
    const contentIndent = base + m[2].length + 1;
    const body = [m[4] || ''];
    i++;
    while (i < lines.length) {
      const line = lines[i];
      if (isBlank(line)) {
        // A blank line continues the item only if indented content follows.
        let k = i + 1;
        while (k < lines.length && isBlank(lines[k])) k++;
        if (k < lines.length && indentOf(lines[k]) >= contentIndent) {
          loose = true;
          for (; i < k; i++) body.push('');
          continue;
        }
        break;
      }
      const ind = indentOf(line);
      if (ind >= contentIndent || (ind > base && RE_ITEM.test(line))) {
        body.push(line.slice(Math.min(ind, contentIndent)));
        i++;
        continue;
      }
      if (RE_ITEM.test(line) || startsBlock(line)) break;
      body.push(line.trim());   // lazy continuation of the item's paragraph
      i++;
    }
    items.push(body);
    if (i < lines.length && isBlank(lines[i])) {
      let k = i;
      while (k < lines.length && isBlank(lines[k])) k++;
      const nm = k < lines.length && RE_ITEM.exec(lines[k]);
      if (nm && nm[1].length === base && /\d/.test(nm[2]) === ordered) { loose = true; i = k; }
    }
  }
  for (const body of items) {
    const li = el('li');
    const tmp = document.createDocumentFragment();
    blocks(body, tmp, depth + 1);
    // Tight lists show their text without paragraph margins.
    if (!loose) {
      for (const ch of Array.from(tmp.childNodes)) {
        if (ch.nodeName === 'P') { while (ch.firstChild) li.appendChild(ch.firstChild); } else li.appendChild(ch);
      }
    } else li.appendChild(tmp);
    node.appendChild(li);
  }
  parent.appendChild(node);
  return i;
}

function blocks(lines, parent, depth) {
  if (depth > MAX_DEPTH) {
    const p = el('p', null, lines.join('\n'));
    p.style.whiteSpace = 'pre-wrap';
    parent.appendChild(p);
    return;
  }
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (isBlank(line)) { i++; continue; }
    let m;
    if ((m = RE_FENCE.exec(line))) {
      const fence = m[1];
      const body = [];
      i++;
      while (i < lines.length) {
        const t = lines[i].trim();
        if (t.length >= fence.length && t[0] === fence[0] && /^(`+|~+)$/.test(t)) { i++; break; }
        body.push(lines[i]);
        i++;
      }
      parent.appendChild(codeBlock(m[2], body.join('\n')));
      continue;
    }
    if ((m = RE_HEADING.exec(line))) {
      const h = el('h' + m[1].length);
      inlineInto(m[2] || '', h);
      parent.appendChild(h);
      i++; continue;
    }
    if (RE_HR.test(line)) { parent.appendChild(el('hr')); i++; continue; }
    if (RE_QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && (m = RE_QUOTE.exec(lines[i]))) { body.push(m[1]); i++; }
      const q = el('blockquote');
      blocks(body, q, depth + 1);
      parent.appendChild(q);
      continue;
    }
    if (RE_ITEM.test(line)) {
      i = list(lines, i, parent, depth);
      continue;
    }
    if (isTableStart(lines, i)) {
      i = table(lines, i, parent);
      continue;
    }
    const para = [line.trim()];
    i++;
    while (i < lines.length && !isBlank(lines[i]) && !startsBlock(lines[i]) &&
           !isTableStart(lines, i)) {
      para.push(lines[i].trim());
      i++;
    }
    const p = el('p');
    inlineInto(para.join('\n'), p);
    parent.appendChild(p);
  }
}

// Splits a leading <think>…</think> section (reasoning models) from the answer.
function splitThink(text) {
  const m = /^\s*<think>([\s\S]*?)(<\/think>|$)/.exec(text);
  if (!m) return [null, text, false];
  return [m[1].trim(), text.slice(m[0].length), m[2] === ''];
}

// Renders `text` as Markdown into `target`, replacing its children. `thinking` ({text, open}),
// when given, is the reasoning that came apart from the answer (the API's message.thinking):
// it is shown as it is, so a "</think>" inside it stays text. Without it, a leading
// <think>…</think> in `text` is the reasoning.
export function renderMarkdown(target, text, thinking) {
  const frag = document.createDocumentFragment();
  const [think, answer, open] = thinking ? [thinking.text.trim(), String(text || ''), thinking.open] : splitThink(String(text || ''));
  if (think !== null) {
    const d = el('details', 'think');
    if (open) d.open = true;
    d.appendChild(el('summary', null, open ? 'Thinking…' : 'Thought process'));
    d.appendChild(el('div', null, think));
    frag.appendChild(d);
  }
  blocks(answer.replace(/\r\n?/g, '\n').split('\n'), frag, 0);
  target.replaceChildren(frag);
}
