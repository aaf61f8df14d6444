/*
 * DOM helpers and the small widgets every view draws (icons, status badges).
 *
 * Owns: building elements without innerHTML (h), replacing children only when a
 * signature changed (patch: "no redraw when nothing changed"), rendering
 * markdown into a block, and the fixed icon set. Everything shown goes through
 * textContent, or through markdown.js, which escapes before it adds markup.
 * Kept free of state and of other modules so any view can use it.
 */
import { render as renderMarkdown } from "./markdown.js";

export function $(sel, root = document) {
  return root.querySelector(sel);
}

/** h("a", {class: "x", href: "#"}, "text", child) -> element. Strings become text nodes. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const key in attrs) {
      const value = attrs[key];
      if (value == null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  appendAll(el, children);
  return el;
}
function appendAll(el, children) {
  for (const child of children) {
    if (child == null || child === false) continue;
    if (Array.isArray(child)) appendAll(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}
/** Replace all children, skipping null/false entries (conditional pieces). */
export function fill(el, ...kids) {
  const out = [];
  for (const kid of kids.flat(Infinity)) if (kid != null && kid !== false) out.push(kid);
  el.replaceChildren(...out);
}
/** Replace el's children only when sig changed: the heart of "no redraw when nothing changed". */
export function patch(el, sig, build) {
  if (el._sig === sig) return false;
  el._sig = sig;
  const kids = build();
  fill(el, kids);
  return true;
}
export function mdBlock(text, cls = "md") {
  const div = h("div", { class: cls });
  div.innerHTML = renderMarkdown(text || ""); // markdown.js escapes everything first
  return div;
}

const ICON_PATHS = {
  x: '<path d="M6 6l12 12M18 6L6 18"/>',
  play: '<path d="M7 4.5v15l12-7.5z"/>',
  stop: '<rect x="6" y="6" width="12" height="12" rx="2"/>',
  retry: '<path d="M20 11a8 8 0 1 0-2.3 5.7"/><path d="M20 4v7h-7"/>',
  edit: '<path d="M4 20h4L19 9l-4-4L4 16z"/><path d="M13.5 6.5l4 4"/>',
  trash: '<path d="M4 7h16M10 11v6M14 11v6M9 7V4h6v3M6 7l1 13h10l1-13"/>',
  check: '<path d="M5 12.5l4.5 4.5L19 7.5"/>',
  alert: '<path d="M12 3.5l9.5 16.5h-19z"/><path d="M12 10v4.5M12 17.5v.2"/>',
  info: '<circle cx="12" cy="12" r="9"/><path d="M12 11v5.5M12 7.8v.2"/>',
  land: '<path d="M12 4v11M7.5 10.5 12 15l4.5-4.5M5 20h14"/>',
  plan: '<path d="M6 3h9l4 4v14H6z"/><path d="M14.5 3v4.5H19M9 12h7M9 16h5"/>',
  ready: '<circle cx="12" cy="12" r="9"/><path d="M8.5 12.2l2.5 2.5 4.8-5.2"/>',
  filter: '<path d="M4 5h16l-6 7.5V19l-4 1.5v-8z"/>',
  refresh: '<path d="M20 11a8 8 0 1 0-2.3 5.7"/><path d="M20 4v7h-7"/>',
};
export function icon(name) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("fill", "none");
  svg.setAttribute("stroke", "currentColor");
  svg.setAttribute("stroke-width", "2");
  svg.setAttribute("stroke-linecap", "round");
  svg.setAttribute("stroke-linejoin", "round");
  svg.setAttribute("aria-hidden", "true");
  svg.innerHTML = ICON_PATHS[name] || ""; // constant markup from this file
  return svg;
}

export function statusBadge(status, label, spinning) {
  return h("span", { class: "badge", "data-status": status }, spinning ? h("span", { class: "spinner" }) : null,
    label || status);
}
