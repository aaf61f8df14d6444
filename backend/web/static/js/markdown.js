/*
 * Shipyard's markdown renderer: escape first, then add a small fixed set of tags.
 *
 * Every character of the source goes through escapeHtml() before any markup is
 * added, and the only tags that can appear in the output are the ones written
 * in this file (headings, paragraphs, lists, quotes, code, tables, emphasis,
 * links). Raw HTML in the source is shown as text, never interpreted. Link
 * targets are limited to http(s), mailto and scheme-less (relative) URLs;
 * images are shown as links so a plan cannot make the browser fetch anything.
 *
 * Owns: turning untrusted markdown into safe HTML. Kept apart from the views so
 * the escaping rules live in one small file that can be reviewed on its own.
 *
 * API: render(text) -> HTML string (safe to assign to innerHTML)
 *      escapeHtml(text), safeUrl(url)
 * (main.js also exposes it as window.ShipyardMarkdown for the browser tests.)
 */
const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => ESC[c]);
}

// Backslash-escaped punctuation is parked in the private use area so that
// emphasis and link patterns cannot see it, then restored (escaped) at the end.
const PARK_BASE = 0xe000;
function park(text) {
  return text.replace(/\\([!-/:-@[-`{-~])/g, (_m, c) => String.fromCharCode(PARK_BASE + c.charCodeAt(0)));
}
function unpark(html) {
  return html.replace(/[\ue000-\ue07f]/g, (c) => escapeHtml(String.fromCharCode(c.charCodeAt(0) - PARK_BASE)));
}

/** A URL we are willing to put in href, or null. */
export function safeUrl(raw) {
  // Browsers ignore control characters and whitespace inside a scheme
  // ("java\tscript:"), so strip them before looking at the scheme.
  const url = String(raw).replace(/[\u0000-\u0020\u007f-\u009f]/g, "");
  if (!url) return null;
  const scheme = url.match(/^([a-z][a-z0-9+.-]*):/i);
  if (scheme && !/^(https?|mailto)$/i.test(scheme[1])) return null;
  return url;
}

function emphasis(escaped) {
  return escaped
    .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
    .replace(/(^|[^*\w])\*(?=[^\s*])([\s\S]*?[^\s*])\*(?!\*)/g, "$1<em>$2</em>")
    .replace(/(^|[^\w])_(?=[^\s_])([\s\S]*?[^\s_])_(?!\w)/g, "$1<em>$2</em>")
    .replace(/~~(?=\S)([\s\S]*?\S)~~/g, "<del>$1</del>");
}

function link(label, url) {
  const href = safeUrl(url);
  const text = emphasis(escapeHtml(label || url));
  if (href === null) return text;
  const external = /^(https?:)?\/\//i.test(href);
  return `<a href="${escapeHtml(href)}"${external ? ' target="_blank" rel="noopener noreferrer"' : ""}>${text}</a>`;
}

// [label](url "title"), ![alt](url), <https://…>, bare https://…
const LINK_RE = /(!?)\[([^\]\n]*)\]\(\s*<?([^\s<>()]+)>?(?:\s+"[^"\n]*")?\s*\)|<((?:https?:\/\/|mailto:)[^\s<>]+)>|\b(https?:\/\/[^\s<>()]*[^\s<>().,;:!?'"])/g;

function formatText(text) {
  let out = "";
  let last = 0;
  let m;
  LINK_RE.lastIndex = 0;
  while ((m = LINK_RE.exec(text))) {
    out += emphasis(escapeHtml(text.slice(last, m.index)));
    if (m[3] !== undefined) {
      out += m[1] ? link(m[2] ? `${m[2]} (image)` : "image", m[3]) : link(m[2], m[3]);
    } else {
      const url = m[4] || m[5];
      out += link(url, url);
    }
    last = LINK_RE.lastIndex;
  }
  return out + emphasis(escapeHtml(text.slice(last)));
}

/** Inline markdown of one block's text (code spans first: nothing inside them is formatted). */
function inline(src) {
  const text = park(src);
  const re = /(`+)([\s\S]*?[^`])\1(?!`)/g;
  let out = "";
  let last = 0;
  let m;
  while ((m = re.exec(text))) {
    out += formatText(text.slice(last, m.index));
    const code = m[2].length > 2 && /^ .* $/s.test(m[2]) ? m[2].slice(1, -1) : m[2];
    out += `<code>${escapeHtml(unparkRaw(code))}</code>`;
    last = re.lastIndex;
  }
  out += formatText(text.slice(last));
  return unpark(out).replace(/(?: {2,}|\\)\n/g, "<br>\n");
}

// inside code spans a backslash is literal: give the parked characters back as typed
function unparkRaw(text) {
  return text.replace(/[\ue000-\ue07f]/g, (c) => "\\" + String.fromCharCode(c.charCodeAt(0) - PARK_BASE));
}

// ------------------------------------------------------------------ blocks
const FENCE_RE = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)[^`]*$/;
const HEADING_RE = /^ {0,3}(#{1,6})(?:\s+(.*?))?\s*#*\s*$/;
const HR_RE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE_RE = /^ {0,3}>/;
const LIST_RE = /^( *)([-*+]|\d{1,9}[.)])(?:\s+(.*))?$/;
const TABLE_SEP_RE = /^ {0,3}\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$/;
const BLANK_RE = /^\s*$/;

function startsBlock(line) {
  return FENCE_RE.test(line) || HEADING_RE.test(line) || HR_RE.test(line) || QUOTE_RE.test(line) ||
    LIST_RE.test(line);
}

function indentOf(line) {
  return line.match(/^ */)[0].length;
}

function splitRow(row) {
  let text = row.trim();
  if (text.startsWith("|")) text = text.slice(1);
  if (text.endsWith("|") && !text.endsWith("\\|")) text = text.slice(0, -1);
  return text.split(/(?<!\\)\|/).map((cell) => cell.trim());
}

function table(lines, i) {
  const head = splitRow(lines[i]);
  const aligns = splitRow(lines[i + 1]).map((cell) => {
    const left = cell.startsWith(":");
    const right = cell.endsWith(":");
    return left && right ? "center" : right ? "right" : left ? "left" : "";
  });
  const cellHtml = (tag, cell, n) =>
    `<${tag}${aligns[n] ? ` style="text-align:${aligns[n]}"` : ""}>${inline(cell)}</${tag}>`;
  let html = "<div class=\"md-table\"><table><thead><tr>" +
    head.map((c, n) => cellHtml("th", c, n)).join("") + "</tr></thead><tbody>";
  i += 2;
  while (i < lines.length && !BLANK_RE.test(lines[i]) && lines[i].includes("|")) {
    const cells = splitRow(lines[i]);
    html += "<tr>" + head.map((_c, n) => cellHtml("td", cells[n] || "", n)).join("") + "</tr>";
    i++;
  }
  return [html + "</tbody></table></div>", i];
}

function list(lines, i) {
  const first = lines[i].match(LIST_RE);
  const base = first[1].length;
  const ordered = /\d/.test(first[2]);
  const contentIndent = base + first[2].length + 1;
  const items = [];
  let loose = false;
  let current = null;
  while (i < lines.length) {
    const line = lines[i];
    const m = line.match(LIST_RE);
    if (m && m[1].length === base && /\d/.test(m[2]) === ordered && !HR_RE.test(line)) {
      current = [m[3] || ""];
      items.push(current);
      i++;
      continue;
    }
    if (BLANK_RE.test(line)) {
      let j = i + 1;
      while (j < lines.length && BLANK_RE.test(lines[j])) j++;
      const next = j < lines.length ? lines[j].match(LIST_RE) : null;
      const sameList = next && next[1].length === base && /\d/.test(next[2]) === ordered && !HR_RE.test(lines[j]);
      if (j < lines.length && (indentOf(lines[j]) > base || sameList)) {
        if (indentOf(lines[j]) > base) current.push("");
        else loose = true;
        i = j;
        continue;
      }
      break;
    }
    const indent = indentOf(line);
    if (indent > base) {
      current.push(line.slice(Math.min(indent, contentIndent)));
      i++;
      continue;
    }
    if (!startsBlock(line)) { // lazy continuation of the item's paragraph
      current.push(line);
      i++;
      continue;
    }
    break;
  }
  const start = ordered ? parseInt(first[2], 10) : 1;
  const tag = ordered ? "ol" : "ul";
  let html = `<${tag}${ordered && start !== 1 ? ` start="${start}"` : ""}>`;
  for (const item of items) {
    let body = item;
    let check = "";
    const box = body[0].match(/^\[([ xX])\]\s+(.*)$/);
    if (box) {
      check = `<input type="checkbox" disabled${box[1] === " " ? "" : " checked"}> `;
      body = [box[2], ...body.slice(1)];
    }
    const itemLoose = loose || body.some((l) => BLANK_RE.test(l));
    if (itemLoose) {
      const inner = blocks(body);
      const withCheck = check && inner.startsWith("<p>") ? `<p>${check}${inner.slice(3)}` : check + inner;
      html += `<li${check ? ' class="task"' : ""}>${withCheck}</li>`;
    } else {
      let n = 1;
      while (n < body.length && !startsBlock(body[n])) n++;
      html += `<li${check ? ' class="task"' : ""}>${check}${inline(body.slice(0, n).join("\n"))}` +
        `${n < body.length ? blocks(body.slice(n)) : ""}</li>`;
    }
  }
  return [html + `</${tag}>`, i];
}

function blocks(lines) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (BLANK_RE.test(line)) { i++; continue; }
    let m = line.match(FENCE_RE);
    if (m) {
      const fence = m[1];
      const close = new RegExp(`^ {0,3}${fence[0] === "`" ? "`" : "~"}{${fence.length},}\\s*$`);
      const body = [];
      i++;
      while (i < lines.length && !close.test(lines[i])) body.push(lines[i++]);
      i++;
      const lang = m[2] ? ` data-lang="${escapeHtml(m[2])}"` : "";
      out.push(`<pre class="md-code"${lang}><code>${escapeHtml(body.join("\n"))}</code></pre>`);
      continue;
    }
    if ((m = line.match(HEADING_RE))) {
      const level = m[1].length;
      out.push(`<h${level}>${inline(m[2] || "")}</h${level}>`);
      i++;
      continue;
    }
    if (HR_RE.test(line)) { out.push("<hr>"); i++; continue; }
    if (QUOTE_RE.test(line)) {
      const body = [];
      while (i < lines.length && !BLANK_RE.test(lines[i])) {
        body.push(lines[i].replace(/^ {0,3}> ?/, ""));
        i++;
      }
      out.push(`<blockquote>${blocks(body)}</blockquote>`);
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && TABLE_SEP_RE.test(lines[i + 1]) &&
        lines[i + 1].includes("-")) {
      const [html, next] = table(lines, i);
      out.push(html);
      i = next;
      continue;
    }
    if (LIST_RE.test(line)) {
      const [html, next] = list(lines, i);
      out.push(html);
      i = next;
      continue;
    }
    const para = [line];
    i++;
    let heading = 0;
    while (i < lines.length && !BLANK_RE.test(lines[i])) {
      if (/^ {0,3}=+\s*$/.test(lines[i])) { heading = 1; i++; break; }
      if (/^ {0,3}-+\s*$/.test(lines[i])) { heading = 2; i++; break; }
      if (startsBlock(lines[i])) break;
      para.push(lines[i]);
      i++;
    }
    const text = para.map((l) => l.replace(/^ +/, "")).join("\n");
    out.push(heading ? `<h${heading}>${inline(text)}</h${heading}>` : `<p>${inline(text)}</p>`);
  }
  return out.join("\n");
}

export function render(source) {
  const text = String(source == null ? "" : source).replace(/\r\n?/g, "\n").replace(/\t/g, "    ");
  return blocks(text.split("\n"));
}
