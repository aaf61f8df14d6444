/*
 * The client-side state: every plan and task as the API or an event gave it.
 *
 * Owns: S (plans, tasks, plan -> tasks index, running orchestrators, the live
 * activity line per card, health, dispatcher) and `dirty`, the set of cards,
 * columns and widgets the next render must look at. Every mutation goes through
 * setPlan/setTask/dropPlan/dropTask so the dirty marks stay right; rendering
 * (board.js) reads S and clears `dirty`. Events carry whole records, so applying
 * one twice is harmless and the state converges after a reconnect.
 *
 * A live event (stream.js) is applied here by applyEvent(); whoever shows more
 * than S holds listens with onEvent(): the board's page counts before the event
 * lands (they compare with the old record), the header and the open panel after.
 * So the stream knows no view and no view is called by the stream.
 */
import { taskCost } from "./cost.js";
export const TASK_COLUMNS = ["pending", "in_progress", "completed", "failed"];
export const TASK_LABEL = { pending: "pending", in_progress: "in progress", completed: "completed", failed: "failed" };
/** A completed task whose agent changed nothing: its own outcome, shown apart and rerunnable. */
export function changedNothing(t) {
  return t.status === "completed" && (t.outcome === "no_changes" || (!t.outcome && t.result === "no changes"));
}
export const PLAN_LABEL = { draft: "draft", ready: "ready", executing: "executing", review: "in review", done: "done",
  failed: "failed" };

export const S = {
  plans: new Map(), // id -> plan (raw, as the API or an event gave it)
  tasks: new Map(), // id -> task
  byPlan: new Map(), // plan id -> Set(task id)
  orchestrating: new Set(), // plan ids whose orchestrator runs
  verifying: new Set(), // plan ids whose branch is being verified (plan-verify.js)
  activity: new Map(), // "task:<id>" / "plan:<id>" -> latest activity line (live only)
  planNames: new Map(), // plan id -> title, for plans not loaded that loaded tasks belong to
  planTotals: new Map(), // plan id -> {pending, …, total, cost} from the plan summaries (board-pages.js)
  health: null,
  dispatcher: null,
  synced: false,
};
export const dirty = { tasks: new Set(), plans: new Set(), cols: new Set(), filter: false, planOptions: false,
  counts: false };

export function isOrchestrating(plan) {
  return plan.status === "executing" || S.orchestrating.has(plan.id);
}
export function planStats(planId) {
  const plan = S.plans.get(planId);
  const stats = { pending: 0, in_progress: 0, completed: 0, failed: 0, total: 0, cost: 0 };
  const totals = S.planTotals.get(planId);
  if (totals) { // the server's progress (its tasks need not be loaded), nudged by live events
    for (const key of ["pending", "in_progress", "completed", "failed"]) stats[key] = totals[key] || 0;
    stats.total = Math.max(totals.total || 0, plan && plan.tasks ? plan.tasks.length : 0);
    if (totals.superseded) stats.superseded = totals.superseded; // replaced by a re-plan, not failures
    stats.cost = totals.cost || 0;
    return stats;
  }
  if (plan) stats.cost += Math.max(plan.orchestration_cost_usd || 0, (plan.orchestration && plan.orchestration.cost_usd) || 0);
  for (const r of (plan && plan.replans) || []) if (r.run && r.run.cost_usd) stats.cost += r.run.cost_usd;
  const ids = S.byPlan.get(planId);
  if (ids) {
    for (const id of ids) {
      const t = S.tasks.get(id);
      if (!t) continue;
      if (t.superseded_by != null) stats.superseded = (stats.superseded || 0) + 1; // replaced by a re-plan
      else stats[t.status] = (stats[t.status] || 0) + 1;
      stats.total++;
      stats.cost += taskCost(t) || 0;
    }
  }
  if (plan && plan.tasks && plan.tasks.length > stats.total) stats.total = plan.tasks.length;
  return stats;
}
export function planTaskIds(plan) {
  const ids = [...(plan.tasks || [])];
  const seen = new Set(ids);
  const extra = [...(S.byPlan.get(plan.id) || [])].filter((id) => !seen.has(id));
  extra.sort((a, b) => String(S.tasks.get(a)?.created).localeCompare(String(S.tasks.get(b)?.created)));
  return ids.concat(extra);
}

export function setTask(task) {
  const old = S.tasks.get(task.id);
  S.tasks.set(task.id, task);
  dirty.tasks.add(task.id);
  if (!old || old.status !== task.status || old.started !== task.started || old.finished !== task.finished) {
    dirty.cols.add(task.status);
    if (old) dirty.cols.add(old.status);
  }
  if (!old || old.status !== task.status) markShapeNeighbours(task);
  else if (task.plan_id && (old.run && old.run.cost_usd) !== (task.run && task.run.cost_usd)) {
    for (const id of S.byPlan.get(task.plan_id) || []) dirty.tasks.add(id); // the budget may be reached now
  }
  if (old && old.plan_id && old.plan_id !== task.plan_id) {
    S.byPlan.get(old.plan_id)?.delete(task.id);
    dirty.plans.add(old.plan_id);
  }
  if (task.plan_id) {
    if (!S.byPlan.has(task.plan_id)) S.byPlan.set(task.plan_id, new Set());
    S.byPlan.get(task.plan_id).add(task.id);
    dirty.plans.add(task.plan_id);
  }
  if (task.status !== "in_progress") S.activity.delete(`task:${task.id}`);
}
/** A status change can change what other tasks wait for (shape.js): redraw their cards. */
function markShapeNeighbours(task) {
  const ids = task.plan_id ? S.byPlan.get(task.plan_id) : null;
  if (ids) for (const id of ids) dirty.tasks.add(id);
  if (!S.synced) return; // standalone tasks that may depend on it: after the first snapshot
  for (const other of S.tasks.values()) {
    if (!other.plan_id && other.status === "pending" && ((other.depends_on || []).length || (other.files || []).length)) {
      dirty.tasks.add(other.id);
    }
  }
}
export function dropTask(id) {
  const old = S.tasks.get(id);
  if (!old) return;
  S.tasks.delete(id);
  S.activity.delete(`task:${id}`);
  dirty.tasks.add(id);
  dirty.cols.add(old.status);
  if (old.plan_id) {
    S.byPlan.get(old.plan_id)?.delete(id);
    dirty.plans.add(old.plan_id);
  }
}
export function setPlan(plan) {
  const old = S.plans.get(plan.id);
  S.plans.set(plan.id, plan);
  dirty.plans.add(plan.id);
  if (!old) dirty.cols.add("plans");
  if (old && (old.max_cost_usd !== plan.max_cost_usd || JSON.stringify(old.replans) !== JSON.stringify(plan.replans))) {
    for (const id of S.byPlan.get(plan.id) || []) dirty.tasks.add(id); // budget waits of its cards
  }
  if (!old || old.title !== plan.title) {
    dirty.planOptions = true;
    for (const id of S.byPlan.get(plan.id) || []) dirty.tasks.add(id); // cards show the plan's title
  }
  if (plan.status === "done" || plan.status === "failed" || plan.status === "draft") {
    S.orchestrating.delete(plan.id);
  }
  if (plan.status !== "executing" && !S.orchestrating.has(plan.id)) S.activity.delete(`plan:${plan.id}`);
}
export function dropPlan(id) {
  if (!S.plans.has(id)) return;
  S.plans.delete(id);
  S.planTotals.delete(id);
  S.orchestrating.delete(id);
  S.verifying.delete(id);
  dirty.plans.add(id);
  dirty.cols.add("plans");
  dirty.planOptions = true;
  for (const tid of S.byPlan.get(id) || []) dirty.tasks.add(tid);
}

/** A plan as stored here: the API's derived fields (computed here from the tasks) stripped. */
export function planRecord(plan) {
  const { orchestrating, progress, total_cost_usd, task_details, lifecycle, ...raw } = plan;
  return raw;
}

/** Latest activity line for a card: what the agent is doing right now. */
export function activityLine(ev) {
  switch (ev.kind) {
    case "tool_use":
    case "api_retry":
    case "error":
    case "setup":
    case "test":
      return ev.summary;
    case "text":
      return ev.summary ? `“${ev.summary}”` : null;
    case "init":
      return "starting Claude Code…";
    default:
      return null;
  }
}

const listeners = { before: [], after: [] };
/**
 * Call `listener(type, data)` for every live event applied to the state:
 * `before` it changes S (to compare with the old record), else after.
 */
export function onEvent(listener, { before = false } = {}) {
  listeners[before ? "before" : "after"].push(listener);
}

/** Apply one live event (/agent/events) to the state, telling the listeners around it. */
export function applyEvent(type, data) {
  for (const listener of listeners.before) listener(type, data);
  switch (type) {
    case "plan.created":
    case "plan.updated":
    case "plan.status":
      if (data.plan) setPlan(data.plan);
      break;
    case "plan.deleted":
      dropPlan(data.plan_id);
      break;
    case "plan.orchestration":
      if (data.active) S.orchestrating.add(data.plan_id);
      else {
        S.orchestrating.delete(data.plan_id);
        S.activity.delete(`plan:${data.plan_id}`);
      }
      dirty.plans.add(data.plan_id);
      break;
    case "plan.verification":
      if (data.active) S.verifying.add(data.plan_id);
      else S.verifying.delete(data.plan_id);
      dirty.plans.add(data.plan_id);
      break;
    case "plan.log":
      noteActivity("plan", data.plan_id, data.event);
      break;
    case "task.created":
    case "task.updated":
    case "task.status":
      if (data.task) setTask(data.task);
      break;
    case "task.deleted":
      dropTask(data.task_id);
      break;
    case "task.log": {
      const task = S.tasks.get(data.task_id);
      if (task && task.status === "in_progress") noteActivity("task", data.task_id, data.event);
      break;
    }
    case "dispatcher.status": {
      const { id, type: _t, ts, ...status } = data;
      S.dispatcher = status;
      for (const pid of status.active_orchestrations || []) S.orchestrating.add(pid);
      break;
    }
    default:
      break; // a chat's events belong to the editor that shows it (chat.js), not to the state
  }
  for (const listener of listeners.after) listener(type, data);
}

/** The card of plan or task `id` shows what its agent does right now. */
function noteActivity(kind, id, event) {
  const line = activityLine(event || {});
  if (!line) return;
  S.activity.set(`${kind}:${id}`, line);
  dirty[kind === "plan" ? "plans" : "tasks"].add(id);
}
