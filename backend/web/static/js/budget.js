/*
 * Cost budgets on the dashboard: a plan's spend against its limit, the "budget reached"
 * reason of its waiting tasks, and raising the limit.
 *
 * Owns: the browser's copy of backend/budget.py's arithmetic (spend = orchestration +
 * re-plans + every task's cost; limit = the plan's max_cost_usd, else the
 * max_plan_cost_usd setting from /agent/health), kept to the same sentence so a card says
 * what the API's waiting_for says; and the budget notice of the plan panel, whose
 * "Raise budget" sends PATCH /agent/plans/<id> (the dispatcher then starts the waiting tasks).
 */
import { api } from "./api.js";
import { money, taskCost } from "./cost.js";
import { h, icon } from "./dom.js";
import { enc } from "./format.js";
import { runAction } from "./panel.js";
import { S } from "./store.js";

/** What a plan's own runs cost: its orchestration and every re-plan. */
export function planningCost(plan) {
  const latest = plan && plan.orchestration && plan.orchestration.cost_usd ? plan.orchestration.cost_usd : 0;
  let cost = Math.max(latest, (plan && plan.orchestration_cost_usd) || 0); // every orchestration, where summed
  for (const r of (plan && plan.replans) || []) if (r.run && r.run.cost_usd) cost += r.run.cost_usd;
  return cost;
}

/** {limit, spent, reached} of a plan from the client state (limit null: no limit). */
export function planBudget(plan) {
  const setting = S.health && S.health.limits ? S.health.limits.max_plan_cost_usd : null;
  const limit = plan.max_cost_usd != null ? plan.max_cost_usd : setting != null ? setting : null;
  let spent = planningCost(plan);
  for (const id of plan.tasks || []) {
    const t = S.tasks.get(id);
    if (t) spent += taskCost(t) || 0;
  }
  return { limit, spent, reached: limit != null && spent >= limit };
}

/** The plan-level wait of a pending task whose plan has spent its budget, else null. */
export function budgetWait(task) {
  if (task.status !== "pending" || !task.plan_id) return null;
  const plan = S.plans.get(task.plan_id);
  if (!plan) return null;
  const b = planBudget(plan);
  if (!b.reached) return null;
  return { id: "", title: "", reason: "budget", status: "reached", paths: [], held: false,
    text: `budget reached: ${money(b.spent)} of ${money(b.limit)} spent — raise the plan's budget to continue` };
}

/** The plan panel's budget notice: shown once the budget is reached, with a way to raise it. */
export function budgetNotice(view, plan) {
  const b = planBudget(plan);
  if (!b.reached) return null;
  const waiting = (plan.tasks || []).filter((id) => (S.tasks.get(id) || {}).status === "pending").length;
  const suggested = Math.max(b.limit * 2, b.spent + b.limit);
  const input = h("input", { type: "number", min: "0.01", step: "0.01", class: "budget-input", name: "max_cost_usd",
    "aria-label": "New budget in USD", value: suggested.toFixed(2) });
  const raise = () => runAction(view, "raise-budget", () => {
    const value = Number(input.value);
    if (!(value > 0)) throw new Error("Give the new budget in dollars, above zero.");
    return api("PATCH", `/agent/plans/${enc(plan.id)}`, { max_cost_usd: value });
  });
  return h("div", { class: "notice warn budget-notice", role: "status" }, icon("alert"),
    h("div", { class: "notice-body" },
      h("strong", null, `Budget reached: ${money(b.spent)} of ${money(b.limit)} spent`),
      waiting ? `${waiting} waiting task(s) will not start until you raise it.` : "No further task of this plan starts.",
      h("form", { class: "budget-form", onsubmit: (e) => { e.preventDefault(); raise(); } },
        h("label", null, "New budget $", input),
        h("button", { class: "btn primary", type: "submit", "data-action": "raise-budget",
          disabled: Boolean(view.busy) }, "Raise budget"))));
}
