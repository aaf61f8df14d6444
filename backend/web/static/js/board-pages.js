/*
 * The board's data, a page at a time: what is visible is loaded, the rest live-updates.
 *
 * Why: loading every plan and task (the export) made a board of 10,000 tasks fetch
 * megabytes and build 10,000 cards before the first paint. Instead each column asks
 * the paged API (GET /agent/tasks?status=<col>&limit=…, GET /agent/plans?limit=…)
 * for its first page, and the next page when its "load more" footer scrolls into
 * view (or is clicked). The header counts come from the server's `counts` (every
 * item, not just the loaded ones), plan progress from the plan summaries, and the
 * filter box and plan filter become `q` and `plan_id` on the same queries.
 *
 * Live events (stream.js, applied by store.js) still add, move and remove loaded cards at once; they
 * also nudge the counts and plan progress right away, and a short, throttled
 * re-read of the first pages (refreshSoon) puts the server's figures back in
 * charge, so nothing drifts however many events arrive or were missed.
 *
 * Owns: per-column cursors, totals and the load-more footers; S.planTotals.
 */
import { api } from "./api.js";
import { h } from "./dom.js";
import { taskCost } from "./cost.js";
import { S, TASK_COLUMNS, dirty, dropPlan, dropTask, onEvent, planRecord, setPlan, setTask } from "./store.js";
import { scheduleFlush } from "./render.js";

export const PAGE_SIZE = 50;
const REFRESH_MS = 1500; // at most one re-read of the first pages per this interval while events flow
const ORDER = { plans: "desc", pending: "asc", in_progress: "asc", completed: "desc", failed: "desc" };
const COLUMNS = ["plans", ...TASK_COLUMNS];

/** Server-side figures per column: `total` (every item), `matching` (the current filter), cursors. */
export const pages = {
  total: {}, // column -> count over everything (the server's `counts`, nudged by live events)
  matching: {}, // column -> items matching the filter (the page's `total`), when filtering
  cursor: {}, // column -> next_cursor, or null when the column is fully loaded
  loading: {}, // column -> a page request in flight
  depth: {}, // column -> pages loaded since the last fresh load
  known: false, // the server's figures arrived at least once
};
let query = { q: "", plan: "" };
let generation = 0; // a newer fresh first-page load makes older loads and refreshes stale
let queryGen = 0; // a new query (or a reconnect) makes every older page stale, "load more" too
const footers = {};
const observers = {};

function tasksUrl(col, cursor) {
  const params = new URLSearchParams({ status: col, limit: String(PAGE_SIZE), order: ORDER[col] });
  if (query.q) params.set("q", query.q);
  if (query.plan) params.set("plan_id", query.plan);
  if (cursor) params.set("cursor", cursor);
  return `/agent/tasks?${params}`;
}
function plansUrl(cursor) {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE), order: ORDER.plans });
  if (query.q) params.set("q", query.q);
  if (cursor) params.set("cursor", cursor);
  return `/agent/plans?${params}`;
}

function applyPlans(items) {
  for (const plan of items) {
    if (plan.orchestrating) S.orchestrating.add(plan.id);
    else S.orchestrating.delete(plan.id);
    if (plan.lifecycle && plan.lifecycle.state === "verifying") S.verifying.add(plan.id);
    else S.verifying.delete(plan.id);
    if (plan.progress) {
      S.planTotals.set(plan.id, { ...plan.progress, cost: plan.total_cost_usd || 0 });
      dirty.plans.add(plan.id);
    }
    setPlan(planRecord(plan));
  }
}
function applyTasks(items) {
  for (const task of items) setTask(task);
}
function takeCounts(col, page, counts, cursor = true) {
  if (cursor) pages.cursor[col] = page.next_cursor;
  pages.matching[col] = page.total;
  if (col === "plans") pages.total.plans = Object.values(counts || {}).reduce((a, b) => a + b, 0);
  else if (counts) for (const c of TASK_COLUMNS) pages.total[c] = counts[c] || 0;
}

/**
 * Load every column's first page (first load, reconnect, filter change, refresh).
 * `reset`: forget loaded items the pages do not contain (after a reconnect, events may
 * have been missed); otherwise loaded items are kept and only updated.
 */
export async function loadFirstPages({ reset = false, fresh = true } = {}) {
  const gen = reset || fresh ? ++generation : generation; // a refresh never outdates a fresh load
  if (reset || fresh) queryGen++;
  const qgen = queryGen;
  const [plans, ...tasks] = await Promise.all([
    api("GET", plansUrl()),
    ...TASK_COLUMNS.map((col) => api("GET", tasksUrl(col))),
  ]);
  if (gen !== generation || qgen !== queryGen) return false;
  if (reset) {
    const keepPlans = new Set(plans.items.map((p) => p.id));
    for (const id of [...S.plans.keys()]) if (!keepPlans.has(id)) dropPlan(id);
    const keepTasks = new Set(tasks.flatMap((page) => page.items.map((t) => t.id)));
    for (const id of [...S.tasks.keys()]) if (!keepTasks.has(id)) dropTask(id);
  }
  // a refresh keeps the cursor of a column scrolled past its first page (it would load page 2 again)
  const keep = (col) => fresh || reset || !(pages.depth[col] > 1);
  applyPlans(plans.items);
  takeCounts("plans", plans, plans.counts, keep("plans"));
  TASK_COLUMNS.forEach((col, i) => {
    applyTasks(tasks[i].items);
    takeCounts(col, tasks[i], tasks[i].counts, keep(col));
  });
  for (const col of COLUMNS) if (fresh || reset) pages.depth[col] = 1;
  pages.known = true;
  dirty.counts = true;
  renderFooters();
  fetchPlanNames();
  return true;
}

/** The next page of one column (a footer came into view or was clicked). */
export async function loadMore(col) {
  const cursor = pages.cursor[col];
  if (!cursor || pages.loading[col]) return;
  const qgen = queryGen;
  pages.loading[col] = true;
  renderFooter(col);
  let page;
  try {
    page = await api("GET", col === "plans" ? plansUrl(cursor) : tasksUrl(col, cursor));
  } catch (err) {
    pages.loading[col] = false;
    renderFooter(col);
    footers[col].textContent = `Could not load more: ${err.message}`;
    return;
  }
  pages.loading[col] = false;
  if (qgen !== queryGen) { // the filter changed meanwhile: this page is of the old one
    renderFooter(col);
    return;
  }
  if (col === "plans") applyPlans(page.items);
  else applyTasks(page.items);
  takeCounts(col, page, page.counts);
  pages.depth[col] = (pages.depth[col] || 1) + 1;
  dirty.counts = true;
  dirty.cols.add(col);
  fetchPlanNames();
  renderFooter(col);
  scheduleFlush();
  // A tall screen can show the whole page: observing the footer anew reports where it is
  // once the new cards are laid out (the render runs first, in the same frame), so the
  // next page loads only while the footer really is still in view.
  const observer = observers[col];
  if (observer) {
    observer.unobserve(footers[col]);
    observer.observe(footers[col]);
  }
}

const namesAsked = new Set();
/** Titles of the plans loaded tasks belong to but whose cards are not loaded (GET /agent/plans?ids=…). */
async function fetchPlanNames() {
  const missing = new Set();
  for (const t of S.tasks.values()) {
    const id = t.plan_id;
    if (id && !S.plans.has(id) && !S.planNames.has(id) && !namesAsked.has(id) && missing.size < 500) missing.add(id);
  }
  if (!missing.size) return;
  for (const id of missing) namesAsked.add(id);
  try {
    const page = await api("GET", `/agent/plans?ids=${[...missing].join(",")}`);
    for (const plan of page.items) S.planNames.set(plan.id, plan.title);
    for (const t of S.tasks.values()) if (missing.has(t.plan_id)) dirty.tasks.add(t.id);
    scheduleFlush();
  } catch (err) {
    // the cards keep showing the plan's id; the next refresh asks again
  } finally {
    for (const id of missing) namesAsked.delete(id);
  }
}

let refreshTimer = null;
/** Re-read the first pages soon (at most once per REFRESH_MS): counts and plan progress as the server has them. */
export function refreshSoon() {
  if (refreshTimer || !pages.known) return;
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    try {
      if (await loadFirstPages({ fresh: false })) scheduleFlush();
    } catch (err) {
      // the stream's reconnect reloads everything; nothing to show here
    }
  }, REFRESH_MS);
}

let filterTimer = null;
/** The filter box (`q`) or the plan filter (`plan_id`) changed: ask the server for matching first pages. */
export function setQuery(q, plan) {
  if (q === query.q && plan === query.plan) return;
  query = { q, plan };
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => {
    loadFirstPages().then((current) => { if (current) scheduleFlush(); }).catch(() => {});
  }, q ? 200 : 0);
}
/** Whether the counts shown are for a filter (then `matching` / `total`). */
export function filtering(col) {
  return col === "plans" ? Boolean(query.q) : Boolean(query.q || query.plan);
}

/**
 * A live event, before store.js applies it: move the counts and plan progress now
 * (the refresh that follows confirms them against the server).
 */
function noteEvent(type, data) {
  if (!pages.known) return;
  if (type.startsWith("task.")) {
    const task = data.task;
    const old = task ? S.tasks.get(task.id) : S.tasks.get(data.task_id);
    let from = null;
    let to = null;
    if (type === "task.created" && task && !old) to = task.status;
    else if (type === "task.status" && data.from && data.to) [from, to] = [data.from, data.to];
    else if (type === "task.deleted" && old) from = old.status;
    if (from !== to) {
      if (from && pages.total[from] != null) pages.total[from] = Math.max(0, pages.total[from] - 1);
      if (to && pages.total[to] != null) pages.total[to] += 1;
      const planId = (task || old || {}).plan_id;
      const totals = planId ? S.planTotals.get(planId) : null;
      if (totals) {
        if (from && totals[from]) totals[from] -= 1;
        if (to) totals[to] = (totals[to] || 0) + 1;
        dirty.plans.add(planId);
      }
      dirty.counts = true;
    }
    // a run's cost arrives as a task update: the plan's total moves with it, not a refresh later
    const totals = task && task.plan_id ? S.planTotals.get(task.plan_id) : null;
    const added = task ? (taskCost(task) || 0) - (old ? taskCost(old) || 0 : 0) : 0;
    if (totals && added) {
      totals.cost = (totals.cost || 0) + added;
      dirty.plans.add(task.plan_id);
    }
    if (type !== "task.log") refreshSoon();
  } else if (type === "plan.created" || type === "plan.deleted" || type === "plan.status") {
    if (type === "plan.created" && data.plan && !S.plans.has(data.plan.id)) pages.total.plans = (pages.total.plans || 0) + 1;
    if (type === "plan.deleted" && S.plans.has(data.plan_id)) pages.total.plans = Math.max(0, (pages.total.plans || 0) - 1);
    dirty.counts = true;
    refreshSoon();
  }
}

function loadedIn(col) {
  if (col === "plans") return S.plans.size;
  let n = 0;
  for (const t of S.tasks.values()) if (t.status === col) n++;
  return n;
}

function renderFooter(col) {
  const el = footers[col];
  if (!el) return;
  const more = Boolean(pages.cursor[col]);
  if (el.hidden !== !more) el.hidden = !more;
  if (!more) return;
  const total = filtering(col) ? pages.matching[col] : pages.total[col];
  const left = Math.max(0, (total || 0) - loadedIn(col));
  const text = pages.loading[col] ? "Loading…" : left ? `Load more · ${left.toLocaleString()} not shown` : "Load more";
  if (el.textContent !== text) el.textContent = text;
  el.disabled = Boolean(pages.loading[col]);
}
/** Refresh every footer's text (after a render: the loaded counts changed). */
export function renderFooters() {
  for (const col of COLUMNS) renderFooter(col);
}

/**
 * One "load more" footer per column, kept as the last child of its card list
 * (board.js leaves elements without a data-id where they are), loading the next
 * page when it comes within 300 px of view or is clicked.
 */
export function initPages() {
  onEvent(noteEvent, { before: true });
  for (const col of COLUMNS) {
    const cards = document.querySelector(`.column[data-col="${col}"] .cards`);
    const footer = h("button", { class: "load-more", type: "button", hidden: true, "data-col": col,
      onclick: () => loadMore(col) }, "Load more");
    footers[col] = footer;
    cards.append(footer);
    if (typeof IntersectionObserver !== "undefined") {
      observers[col] = new IntersectionObserver((entries) => {
        if (entries.some((e) => e.isIntersecting)) loadMore(col);
      }, { root: cards, rootMargin: "0px 0px 300px 0px" });
      observers[col].observe(footer);
    }
  }
}
