/*
 * The board: the Plans column and the four task columns, their cards, the
 * filter box and plan filter, and keyboard movement between cards.
 *
 * Owns: one <a class="card"> per plan and task, created once and refilled only
 * when the fields it shows changed (a string signature per card), moved between
 * columns by reusing the element, hidden rather than removed when the filter
 * excludes it; column order and counts; which card is selected (open in the
 * panel). renderBoard() looks only at what store.js marked dirty.
 */
import { $, fill, h, icon, patch } from "./dom.js";
import { agentChip } from "./agents.js";
import { filtering, pages, renderFooters, setQuery } from "./board-pages.js";
import { costBreakdown, fmtCost, taskCost } from "./cost.js";
import { enc, fmtCount, fmtDuration } from "./format.js";
import { repairCardLine, repairSig } from "./repair.js";
import { navigate, onNavigate } from "./router.js";
import { S, TASK_COLUMNS, TASK_LABEL, changedNothing, dirty, isOrchestrating, planStats } from "./store.js";
import { planBadge, planLifecycle } from "./plan-verify.js";
import { taskWaits, waitText } from "./shape.js";
import { onFlush, scheduleFlush } from "./render.js";

const columns = {};
for (const col of ["plans", ...TASK_COLUMNS]) {
  const section = $(`.column[data-col="${col}"]`);
  columns[col] = {
    section,
    cards: section.querySelector(".cards"),
    count: section.querySelector(".count"),
    empty: section.querySelector(".column-empty"),
  };
}
const taskCards = new Map();
const planCards = new Map();
export const filterInput = $("#filter");
const planFilter = $("#plan-filter");
let filterText = "";
let filterPlan = "";
let selectedId = null;

function taskMatches(t) {
  if (filterPlan && t.plan_id !== filterPlan) return false;
  if (!filterText) return true;
  return t.title.toLowerCase().includes(filterText) || t.id.toLowerCase().includes(filterText);
}
function planMatches(p) {
  if (!filterText) return true;
  return p.title.toLowerCase().includes(filterText) || p.id.toLowerCase().includes(filterText) ||
    (p.summary || "").toLowerCase().includes(filterText);
}

function progressBar(stats) {
  const bar = h("div", { class: "progress", role: "img",
    "aria-label": `${stats.completed} of ${stats.total} tasks done, ${stats.failed} failed` });
  if (stats.total) {
    for (const key of ["completed", "in_progress", "failed"]) {
      if (stats[key]) {
        const seg = h("span", { class: `p-${key}` });
        seg.style.width = `${(100 * stats[key]) / stats.total}%`;
        bar.append(seg);
      }
    }
  }
  return bar;
}

function waitLine(t) {
  const waits = taskWaits(t);
  return waits.length ? waitText(waits[0]) + (waits.length > 1 ? ` (+${waits.length - 1} more)` : "") : "";
}
function taskSig(t) {
  const plan = t.plan_id ? S.plans.get(t.plan_id) : null;
  return [t.title, t.status, t.outcome, t.task_type, plan ? plan.title : S.planNames.get(t.plan_id) || t.plan_id,
    t.attempts, t.error,
    t.run && t.run.cost_usd, t.run && t.run.duration_ms, S.activity.get(`task:${t.id}`), waitLine(t), t.agent,
    t.run && t.run.model, t.run && t.run.output_tokens, t.superseded_by, repairSig(t)].join("\u0001");
}
function fillTaskCard(el, t) {
  const plan = t.plan_id ? S.plans.get(t.plan_id) : null;
  const planTitle = plan ? plan.title : S.planNames.get(t.plan_id); // a plan not loaded: its title only
  const activity = S.activity.get(`task:${t.id}`);
  el.dataset.status = t.status;
  if (t.superseded_by != null) el.dataset.superseded = String(t.superseded_by); // replaced by a re-plan
  else delete el.dataset.superseded;
  el.setAttribute("aria-label", `Task: ${t.title} (${TASK_LABEL[t.status] || t.status})`);
  fill(el,
    h("div", { class: "card-top" },
      h("span", { class: "chip" }, t.task_type || "task"),
      t.status === "in_progress" ? h("span", { class: "badge", "data-status": "in_progress" },
        h("span", { class: "spinner" }), "running") : null,
      t.superseded_by != null ? h("span", { class: "badge", "data-status": "superseded",
        title: `Replaced by re-plan ${t.superseded_by} of its plan` }, "superseded") : null,
      changedNothing(t) ? h("span", { class: "badge", "data-status": "no_changes",
        title: "The agent changed nothing; it can be rerun" }, "no changes") : null,
      t.attempts > 1 ? h("span", { class: "chip", title: "attempts" }, `try ${t.attempts}`) : null,
      agentChip(t.agent || (t.run && t.run.agent), t.run && t.run.model),
      h("span", { class: "card-id" }, t.id)),
    h("div", { class: "card-title" }, t.title),
    (plan || t.plan_id || t.run) ? h("div", { class: "card-meta" },
      t.plan_id ? h("span", { class: "plan-ref", title: planTitle ? `Plan: ${planTitle}` : "plan" }, icon("plan"),
        planTitle || t.plan_id) : null,
      h("span", { class: "grow" }),
      runCost(t),
      t.run && t.run.duration_ms && t.status !== "in_progress" ? h("span", { title: "duration" },
        fmtDuration(t.run.duration_ms)) : null) : null,
    repairCardLine(t),
    t.status === "in_progress" && activity ? h("div", { class: "card-activity", title: activity }, activity) : null,
    t.status === "failed" && t.error ? h("div", { class: "card-error" }, t.error) : null,
    waitLine(t) ? h("div", { class: `card-wait${taskWaits(t).some((w) => w.held) ? " held" : ""}`, title: waitLine(t) },
      waitLine(t)) : null,
  );
}

/** Cost of every run so far, or "—" with the tokens when the agent reports no cost (Codex, Gemini CLI). */
function runCost(t) {
  const run = t.run;
  if (!run) return null;
  const cost = taskCost(t);
  if (cost) return h("span", { title: costBreakdown(t) }, fmtCost(cost));
  const tokens = (run.input_tokens || 0) + (run.output_tokens || 0);
  return tokens ? h("span", { class: "no-cost", title: "the agent reports no cost: tokens in + out" },
    `— · ${fmtCount(tokens)} tok`) : null;
}

function planSig(p) {
  const s = planStats(p.id);
  return [p.title, p.summary, p.status, isOrchestrating(p), p.error, s.pending, s.in_progress, s.completed,
    s.failed, s.total, s.cost.toFixed(4), isOrchestrating(p) ? S.activity.get(`plan:${p.id}`) : "",
    filterPlan === p.id, p.agent, p.orchestrator_agent, JSON.stringify(planLifecycle(p))].join("\u0001");
}
function fillPlanCard(el, p) {
  const s = planStats(p.id);
  const orch = isOrchestrating(p);
  const activity = orch ? S.activity.get(`plan:${p.id}`) : null;
  el.dataset.status = p.status;
  el.classList.toggle("filtering", filterPlan === p.id);
  const lc = planLifecycle(p);
  el.dataset.lifecycle = lc.state;
  el.setAttribute("aria-label", `Plan: ${p.title} (${p.status === "done" || p.landed ? lc.label : p.status}${
    s.total ? `, ${s.completed}/${s.total} done` : ""})`);
  fill(el,
    h("div", { class: "card-top" },
      planBadge(p, lc),
      filterPlan === p.id ? h("span", { class: "chip", title: "the board shows this plan's tasks" }, "filtered") : null,
      p.agent_per_task ? h("span", { class: "chip agent-chip", title: "the orchestrator picks an agent per task" },
        "agents: per task") : agentChip(p.agent),
      h("span", { class: "card-id" }, p.id)),
    h("div", { class: "card-title" }, p.title),
    p.summary ? h("div", { class: "card-summary" }, p.summary) : null,
    s.total ? progressBar(s) : null,
    s.total || s.cost ? h("div", { class: "card-meta" },
      s.total ? h("span", { class: "progress-label" }, `${s.completed}/${s.total} done`) : null,
      s.failed ? h("span", { style: "color: var(--red)" }, `${s.failed} failed`) : null,
      s.in_progress ? h("span", null, `${s.in_progress} running`) : null,
      h("span", { class: "grow" }),
      s.cost ? h("span", { title: "total cost" }, fmtCost(s.cost)) : null) : null,
    orch ? h("div", { class: "card-activity", title: activity || "" }, activity || "orchestrator starting…") : null,
    p.status === "failed" && p.error ? h("div", { class: "card-error" }, p.error) : null,
  );
}

// One card per plan or task: created once, refilled only when what it shows changed
// (its signature), hidden rather than removed when the filter excludes it.
function updateCard(id, kind, items, cards, signature, fill, matches) {
  const item = items.get(id);
  let el = cards.get(id);
  if (!item) {
    if (el) {
      el.remove();
      cards.delete(id);
    }
    return;
  }
  if (!el) {
    el = h("a", { class: `card ${kind}-card`, href: `#${kind}/${enc(id)}`, "data-id": id });
    cards.set(id, el);
    if (id === selectedId) el.classList.add("selected");
  }
  const sig = signature(item);
  if (el._sig !== sig) {
    el._sig = sig;
    fill(el, item);
  }
  const hide = !matches(item);
  if (el.hidden !== hide) el.hidden = hide;
}
function updateTaskCard(id) {
  updateCard(id, "task", S.tasks, taskCards, taskSig, fillTaskCard, taskMatches);
}
function updatePlanCard(id) {
  updateCard(id, "plan", S.plans, planCards, planSig, fillPlanCard, planMatches);
}

const byStr = (key, dir = 1) => (a, b) => {
  const x = a[key] || "";
  const y = b[key] || "";
  return x < y ? -dir : x > y ? dir : a.id < b.id ? -1 : 1;
};
const ORDER = {
  plans: byStr("created", -1),
  pending: byStr("created", 1),
  in_progress: byStr("started", 1),
  completed: byEnd,
  failed: byEnd,
};
// most recently finished first; a task cancelled before it started has no "finished": use "modified"
function byEnd(a, b) {
  const x = a.finished || a.modified || "";
  const y = b.finished || b.modified || "";
  return x > y ? -1 : x < y ? 1 : a.id < b.id ? -1 : 1;
}

/** Put the column's cards in order, moving only the elements that are out of place. */
function reorderColumn(col) {
  const items = col === "plans" ? [...S.plans.values()] : [...S.tasks.values()].filter((t) => t.status === col);
  items.sort(ORDER[col]);
  const map = col === "plans" ? planCards : taskCards;
  const container = columns[col].cards;
  let cursor = container.firstElementChild;
  for (const item of items) {
    const el = map.get(item.id);
    if (!el) continue;
    if (el === cursor) {
      cursor = cursor.nextElementSibling;
    } else {
      container.insertBefore(el, cursor);
    }
  }
  while (cursor) {
    const next = cursor.nextElementSibling;
    const id = cursor.dataset.id;
    if (!id) { // the load-more footer (board-pages.js) stays last
      cursor = next;
      continue;
    }
    const owner = col === "plans" ? S.plans.get(id) : S.tasks.get(id);
    if (!owner || (col !== "plans" && owner.status !== col)) cursor.remove();
    cursor = next;
  }
}

function updateCounts() {
  const total = { plans: S.plans.size, pending: 0, in_progress: 0, completed: 0, failed: 0 };
  const shown = { plans: 0, pending: 0, in_progress: 0, completed: 0, failed: 0 };
  for (const p of S.plans.values()) if (planMatches(p)) shown.plans++;
  for (const t of S.tasks.values()) {
    total[t.status]++;
    if (taskMatches(t)) shown[t.status]++;
  }
  const anyFilter = Boolean(filterText || filterPlan);
  for (const col of Object.keys(columns)) {
    const c = columns[col];
    const filteredHere = anyFilter && (col === "plans" ? Boolean(filterText) : true);
    // the server's figures (every item, not only the loaded pages) once they are in
    if (pages.known && pages.total[col] != null) total[col] = Math.max(pages.total[col], total[col]);
    const matching = filteredHere && pages.known && filtering(col) && pages.matching[col] != null
      ? Math.max(pages.matching[col], shown[col]) : shown[col];
    const text = filteredHere && matching !== total[col] ? `${matching} / ${total[col]}` : String(total[col]);
    if (c.count.textContent !== text) c.count.textContent = text;
    const empty = shown[col] === 0;
    if (col === "plans") renderPlansEmpty(empty, total.plans === 0);
    else {
      if (c.empty.hidden !== !empty) c.empty.hidden = !empty;
      if (empty) {
        const msg = total[col] ? "No matching tasks." : (c.empty.dataset.text ||= c.empty.textContent);
        if (c.empty.textContent !== msg) c.empty.textContent = msg;
      }
    }
  }
}

function renderPlansEmpty(empty, none) {
  const el = columns.plans.empty;
  const hide = !empty || !S.synced;
  if (el.hidden !== hide) el.hidden = hide;
  if (hide) return;
  patch(el, none ? "onboarding" : "nomatch", () => none
    ? h("div", { class: "onboarding" },
      h("h3", null, "Start with a plan"),
      h("div", null, "Describe a change in markdown. Shipyard will:"),
      h("ol", null,
        h("li", null, "ask a read-only Claude Code run to split it into tasks,"),
        h("li", null, "run each task with its own agent in its own git worktree,"),
        h("li", null, "merge the results into one branch you can land.")),
      h("button", { class: "btn primary", type: "button", onclick: () => navigate("#new") }, "Write a plan"))
    : h("div", null, "No matching plans."));
}

function renderPlanOptions() {
  const plans = [...S.plans.values()].sort(ORDER.plans);
  const sig = plans.map((p) => p.id + "\u0002" + p.title).join("\u0001");
  if (planFilter._sig === sig) return;
  planFilter._sig = sig;
  const options = [h("option", { value: "" }, "All plans")];
  for (const p of plans) options.push(h("option", { value: p.id }, p.title));
  planFilter.replaceChildren(...options);
  if (filterPlan && !S.plans.has(filterPlan)) {
    filterPlan = "";
    dirty.filter = true;
  }
  planFilter.value = filterPlan;
}

export function renderBoard() {
  if (dirty.planOptions) {
    dirty.planOptions = false;
    renderPlanOptions();
  }
  if (dirty.filter) {
    for (const id of S.tasks.keys()) dirty.tasks.add(id);
    for (const id of S.plans.keys()) dirty.plans.add(id);
  }
  const changed = dirty.counts || dirty.filter || dirty.tasks.size || dirty.plans.size || dirty.cols.size;
  for (const id of dirty.tasks) updateTaskCard(id);
  for (const id of dirty.plans) updatePlanCard(id);
  for (const col of dirty.cols) if (columns[col]) reorderColumn(col);
  dirty.tasks.clear();
  dirty.plans.clear();
  dirty.cols.clear();
  dirty.filter = false;
  dirty.counts = false;
  if (changed) {
    updateCounts();
    renderFooters();
  }
}

export function setFilter() {
  filterText = filterInput.value.trim().toLowerCase();
  filterPlan = planFilter.value;
  setQuery(filterInput.value.trim(), filterPlan);
  dirty.filter = true;
  scheduleFlush();
}
/** Show only the tasks of plan `id`, or all tasks again when it is already the filter. */
export function togglePlanFilter(id) {
  planFilter.value = filterPlan === id ? "" : id;
  setFilter();
}
/** The plan whose tasks the board shows, or "" for all. */
export function filteredPlan() {
  return filterPlan;
}

export function initBoard() {
  filterInput.addEventListener("input", setFilter);
  planFilter.addEventListener("change", setFilter);
  onFlush("board", renderBoard);
  onNavigate("navigate", (e) => selectCard(e.detail.cardId));
  onNavigate("closed", (e) => { if (focusCard(e.detail.cardId)) e.preventDefault(); });

  // keyboard: arrows move between cards, Home/End to the ends of a column
  $("#board").addEventListener("keydown", (e) => {
    const card = e.target.closest && e.target.closest(".card");
    if (!card || e.altKey || e.ctrlKey || e.metaKey) return;
    const visible = (container) => [...container.children].filter((c) => !c.hidden && c.classList.contains("card"));
    const colEl = card.closest(".column");
    const cards = visible(colEl.querySelector(".cards"));
    const index = cards.indexOf(card);
    let target = null;
    if (e.key === "ArrowDown") target = cards[index + 1];
    else if (e.key === "ArrowUp") target = cards[index - 1];
    else if (e.key === "Home") target = cards[0];
    else if (e.key === "End") target = cards[cards.length - 1];
    else if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      const all = [...document.querySelectorAll(".column")];
      let i = all.indexOf(colEl);
      for (;;) {
        i += e.key === "ArrowRight" ? 1 : -1;
        if (i < 0 || i >= all.length) break;
        const other = visible(all[i].querySelector(".cards"));
        if (other.length) {
          target = other[Math.min(index, other.length - 1)];
          break;
        }
      }
    } else if (e.key === " ") {
      e.preventDefault();
      card.click();
      return;
    }
    if (target) {
      e.preventDefault();
      target.focus();
      target.scrollIntoView({ block: "nearest" });
    }
  });
}

/** Mark the card of the view open in the panel (null: none). */
function selectCard(id) {
  if (selectedId === id) return;
  for (const map of [taskCards, planCards]) {
    map.get(selectedId)?.classList.remove("selected");
    map.get(id)?.classList.add("selected");
  }
  selectedId = id;
}
/** Put keyboard focus back on card `id` when it is on the board and shown; whether it did. */
function focusCard(id) {
  const card = id && (taskCards.get(id) || planCards.get(id));
  if (!card || card.hidden) return false;
  card.focus({ preventScroll: false });
  return true;
}
