/*
 * Re-planning on the dashboard: the Re-plan action of a plan whose tasks failed for good,
 * and the state of its last re-plan.
 *
 * Owns: deciding from the client state whether a plan can be re-planned (the same rules
 * as backend/replan.py: the plan is done, has failed tasks not yet superseded, and none
 * still running or waiting to run; a task held by a failed one does not count as waiting),
 * the button (POST /agent/plans/<id>/replan) and the notice saying what the last re-plan did.
 */
import { api } from "./api.js";
import { h } from "./dom.js";
import { enc } from "./format.js";
import { actionButton, messageNotice, runAction } from "./panel.js";
import { planBudget } from "./budget.js";
import { money } from "./cost.js";
import { S } from "./store.js";
import { taskWaits } from "./shape.js";

/** {failed, busy, reason}: the plan's failed tasks, those still running or waiting, why not now. */
export function replanState(plan) {
  const failed = [];
  const busy = [];
  for (const id of plan.tasks || []) {
    const t = S.tasks.get(id);
    if (!t || t.superseded_by != null) continue;
    if (t.status === "failed") failed.push(t);
    else if (t.status === "in_progress") busy.push(t);
    else if (t.status === "pending" && !taskWaits(t).some((w) => w.held)) busy.push(t);
  }
  let reason = null;
  if (busy.length) reason = `${busy.length} task(s) still running or waiting; re-plan once they have finished`;
  else {
    const b = planBudget(plan);
    if (b.reached) reason = `the plan has reached its budget (${money(b.spent)} of ${money(b.limit)}); raise it first`;
  }
  return { failed, busy, reason };
}

/** The Re-plan button, for a done plan with failed tasks (disabled, with the reason, while it cannot run). */
export function replanAction(view, plan, orchestrating) {
  if (plan.status !== "done" || orchestrating) return null;
  const st = replanState(plan);
  if (!st.failed.length) return null;
  return actionButton(view, "replan", "Re-plan", {
    kind: st.reason ? "" : "primary", icon: "retry", busyLabel: "Re-planning…", disabled: Boolean(st.reason),
    title: st.reason || `Ask the orchestrator for replacement tasks for ${st.failed.length} failed task(s); `
      + "they run on the plan's branch and the failed ones are marked superseded",
    onclick: async () => {
      const r = await runAction(view, "replan", () => api("POST", `/agent/plans/${enc(plan.id)}/replan`));
      if (r) view.orchestratorStarted();
    },
  });
}

/** A signature of what replanAction and replanNotice show (for the panel's patch()). */
export function replanSig(plan) {
  const st = replanState(plan);
  return JSON.stringify([st.failed.length, st.reason, (plan.replans || []).map((r) => [r.state, r.error])]);
}

/** What the last re-plan did, while it matters: running, in review, failed, or what it replaced. */
export function replanNotice(plan, orchestrating) {
  const last = (plan.replans || [])[plan.replans.length - 1];
  if (!last) return null;
  const n = last.number;
  if (last.state === "orchestrating" && orchestrating) {
    return messageNotice({ kind: "info", title: `Re-plan ${n} running`,
      text: `The orchestrator is planning replacements for ${last.replaces.length} task(s).` });
  }
  if (last.state === "failed") {
    return messageNotice({ kind: "error", title: `Re-plan ${n} failed`, text: last.error || "no reason recorded" });
  }
  if (last.state === "done") {
    return h("div", { class: "notice ok replan-notice", role: "status" },
      h("div", { class: "notice-body" }, h("strong", null, `Re-plan ${n}`),
        `${last.tasks.length} replacement task(s) run on the plan's branch; ${last.replaces.length} task(s) superseded.`));
  }
  return null;
}

/** True while a re-plan's replacement tasks await review (Approve or Discard). */
export function inReplanReview(plan) {
  const last = (plan.replans || [])[(plan.replans || []).length - 1];
  return plan.status === "review" && Boolean(last) && last.state === "review";
}

/** Where Discard leaves a plan in review, in words. */
export function afterDiscard(plan) {
  return inReplanReview(plan) ? "the plan stays as it was (done, its failed tasks kept)" : "the plan goes back to ready";
}
