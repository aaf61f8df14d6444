/*
 * A plan's shape: its tasks in dependency waves, with dependency and overlap edges.
 *
 * Owns: the browser's copy of the scheduling rules of backend/schedule.py (kept to
 * the same words, so a card says exactly what the API's waiting_for says): a
 * pending task waits for every task in depends_on that is not completed (a failed
 * one holds it), and for an overlapping task (same path, or a folder holding it)
 * that runs or comes earlier; and the shape view (waves as columns, edges drawn
 * in an SVG layer behind the nodes) used by the plan panel and the review screen.
 * Events carry task files without waiting_for, so the board computes it here.
 */
import { h, statusBadge } from "./dom.js";
import { enc } from "./format.js";
import { S, TASK_LABEL } from "./store.js";
import { budgetWait } from "./budget.js";

const SVG = "http://www.w3.org/2000/svg";

export function overlapping(a, b) {
  return a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}

/** Overlapping paths of two file lists (the first list's side). */
export function sharedPaths(a, b) {
  const out = [];
  for (const x of a || []) for (const y of b || []) if (overlapping(x, y) && !out.includes(y)) out.push(y);
  return out;
}

/**
 * For each pending item (in order): [{id, title, reason, status, paths, held}].
 * items: [{id, title, status, files, depends_on (ids)}]; lookup(id) finds one outside the list.
 */
export function computeWaits(items, lookup = () => null) {
  const byId = new Map(items.map((t) => [t.id, t]));
  const held = new Set();
  const claims = []; // [{id, files}]: running, then earlier pending (not held)
  for (const t of items) if (t.status === "in_progress" && (t.files || []).length) claims.push(t);
  const out = new Map();
  for (const t of items) {
    if (t.status !== "pending") continue;
    const waits = [];
    for (const depId of t.depends_on || []) {
      const dep = byId.get(depId) || lookup(depId);
      if (!dep) {
        waits.push({ id: depId, title: "(deleted task)", reason: "dependency", status: "missing", paths: [], held: true });
        continue;
      }
      if (dep.status === "completed") continue;
      waits.push({ id: dep.id, title: dep.title, reason: "dependency", status: dep.status, paths: [],
        held: dep.status === "failed" || held.has(dep.id) });
    }
    if (waits.some((w) => w.held)) held.add(t.id);
    if ((t.files || []).length) {
      const waited = new Set(waits.map((w) => w.id));
      for (const other of claims) {
        if (other.id === t.id || waited.has(other.id)) continue;
        const paths = sharedPaths(other.files, t.files);
        if (paths.length) waits.push({ id: other.id, title: other.title, reason: "overlap", status: other.status, paths,
          held: false });
      }
      if (!held.has(t.id)) claims.push(t);
    }
    out.set(t.id, waits);
  }
  return out;
}

/** The sentence a card shows (backend/schedule.py describe_wait says the same). */
export function waitText(w) {
  if (w.reason === "budget") return w.text;
  if (w.reason === "overlap") return `waits for “${w.title}” — both change ${w.paths.join(", ")}`;
  if (w.held) {
    if (w.status === "missing") return `held: its dependency ${w.id} no longer exists`;
    if (w.status === "failed") return `held: “${w.title}” failed — rerun it to release this task`;
    return `held: “${w.title}” is held`;
  }
  return `waits for “${w.title}” (${String(w.status).replace("_", " ")})`;
}

let memo = { key: null, waits: new Map() };
/** What a board task waits for, from the client state; a spent budget (budget.js) comes last. */
export function taskWaits(task) {
  const plan = budgetWait(task);
  const waits = shapeWaits(task);
  return plan ? [...waits, plan] : waits;
}
/** What a task waits for in its plan's shape (memoised per state of its plan). */
function shapeWaits(task) {
  if (task.status !== "pending" || (!(task.depends_on || []).length && !(task.files || []).length)) return [];
  const plan = task.plan_id ? S.plans.get(task.plan_id) : null;
  const ids = plan ? plan.tasks || [] : [...S.tasks.values()].filter((t) => !t.plan_id && (t.status === "pending"
    || t.status === "in_progress")).sort((a, b) => String(a.created).localeCompare(String(b.created))).map((t) => t.id);
  const items = ids.map((id) => S.tasks.get(id)).filter(Boolean);
  const key = `${task.plan_id || ""}|${items.map((t) => `${t.id}:${t.status}`).join(",")}`;
  if (memo.key !== key) memo = { key, waits: computeWaits(items, (id) => S.tasks.get(id)) };
  return memo.waits.get(task.id) || computeWaits([task], (id) => S.tasks.get(id)).get(task.id) || [];
}

/** Wave number per item: 0 for no dependency, else one more than its deepest dependency. */
export function waves(items) {
  const index = new Map(items.map((t, i) => [t.id, i]));
  const wave = new Map();
  const visiting = new Set();
  const depth = (t) => {
    if (wave.has(t.id)) return wave.get(t.id);
    if (visiting.has(t.id)) return 0; // a cycle (the review screen names it): draw it flat
    visiting.add(t.id);
    let w = 0;
    for (const d of t.depends_on || []) if (index.has(d)) w = Math.max(w, depth(items[index.get(d)]) + 1);
    visiting.delete(t.id);
    wave.set(t.id, w);
    return w;
  };
  for (const t of items) depth(t);
  return wave;
}

/** Edges: dependency (dep -> task) and overlap (earlier -> later, with the shared paths). */
export function edges(items) {
  const out = [];
  const ids = new Set(items.map((t) => t.id));
  items.forEach((t, i) => {
    for (const d of t.depends_on || []) if (ids.has(d)) out.push({ from: d, to: t.id, kind: "dependency" });
    for (let j = 0; j < i; j++) {
      const paths = sharedPaths(items[j].files, t.files);
      if (paths.length && !(t.depends_on || []).includes(items[j].id)) {
        out.push({ from: items[j].id, to: t.id, kind: "overlap", paths });
      }
    }
  });
  return out;
}

/**
 * The shape view: a column per wave, a node per item, edges in an SVG behind them.
 * items: [{id, title, status?, files, depends_on, label?}]; opts.link(id) -> href or null;
 * opts.waits: Map id -> waits (shown under the node).
 */
export function shapeView(items, opts = {}) {
  const wave = waves(items);
  const count = items.length ? Math.max(...wave.values()) + 1 : 0;
  const cols = [];
  for (let w = 0; w < count; w++) {
    cols.push(h("div", { class: "shape-wave", "data-wave": w },
      h("div", { class: "shape-wave-head" }, `Wave ${w + 1}`)));
  }
  const nodes = new Map();
  for (const t of items) {
    const waits = opts.waits ? opts.waits.get(t.id) || [] : [];
    const href = opts.link ? opts.link(t.id) : null;
    const node = h(href ? "a" : "div", {
      class: "shape-node", "data-node": t.id, "data-status": t.status || "proposed", href: href || null,
      title: (t.files || []).length ? `files: ${t.files.join(", ")}` : null,
    },
    h("div", { class: "shape-node-top" },
      t.label ? h("span", { class: "shape-num" }, t.label) : null,
      t.status ? statusBadge(t.status, TASK_LABEL[t.status] || t.status, t.status === "in_progress") : null),
    h("div", { class: "shape-title" }, t.title || "(untitled)"),
    (t.files || []).length ? h("div", { class: "shape-files mono" }, t.files.join(", ")) : null,
    waits.length ? h("div", { class: "shape-wait" }, waitText(waits[0])) : null);
    nodes.set(t.id, node);
    cols[wave.get(t.id)].append(node);
  }
  const list = edges(items);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "shape-edges");
  svg.setAttribute("aria-hidden", "true");
  const grid = h("div", { class: "shape-grid" }, cols);
  const root = h("div", { class: "shape", role: "group", "aria-label": "Plan shape" }, svg, grid,
    list.length ? h("ul", { class: "shape-legend" },
      h("li", { class: "dependency" }, "depends on"), h("li", { class: "overlap" }, "same files: runs after")) : null);
  root.dataset.edges = String(list.length);
  const draw = () => {
    if (!root.isConnected) return;
    const box = root.getBoundingClientRect();
    svg.setAttribute("width", String(box.width));
    svg.setAttribute("height", String(box.height));
    svg.replaceChildren();
    for (const e of list) {
      const a = nodes.get(e.from).getBoundingClientRect();
      const b = nodes.get(e.to).getBoundingClientRect();
      // same wave (an overlap): a bow out of the right edges; else right edge to left edge
      const sameCol = Math.abs(a.left - b.left) < 4;
      const x1 = a.right - box.left;
      const y1 = a.top + a.height / 2 - box.top;
      const x2 = sameCol ? b.right - box.left : b.left - box.left;
      const y2 = b.top + b.height / 2 - box.top;
      const path = document.createElementNS(SVG, "path");
      const dx = Math.max(20, (x2 - x1) / 2);
      path.setAttribute("d", sameCol ? `M${x1},${y1} C${x1 + 28},${y1} ${x2 + 28},${y2} ${x2},${y2}`
        : `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`);
      path.setAttribute("class", `edge ${e.kind}`);
      path.dataset.from = e.from;
      path.dataset.to = e.to;
      if (e.paths) {
        const title = document.createElementNS(SVG, "title");
        title.textContent = `both change ${e.paths.join(", ")}`;
        path.append(title);
      }
      svg.append(path);
    }
  };
  // edges need the laid-out positions: draw after layout and whenever the size changes
  const observer = new ResizeObserver(() => draw());
  observer.observe(root);
  requestAnimationFrame(draw);
  root._dispose = () => observer.disconnect();
  return root;
}

/** Items for shapeView from a plan's live tasks (ids in plan order). */
export function planItems(plan) {
  return (plan.tasks || []).map((id) => S.tasks.get(id)).filter(Boolean)
    .map((t) => ({ id: t.id, title: t.title, status: t.status, files: t.files || [], depends_on: t.depends_on || [] }));
}

export function taskLink(id) {
  return `#task/${enc(id)}`;
}
