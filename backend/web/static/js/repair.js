/*
 * Integration repair and cumulative cost, for task cards and the task panel.
 *
 * Owns: how a task's repair shows ("repairing conflict on `app.py` (attempt 1 of 1)",
 * live while the agent resolves it; the attempts and how each ended afterwards) and what
 * a task cost in all: `total_cost_usd` adds up every run (reruns, retries, repairs), with
 * `run_history` for the breakdown. See docs/convergence.md.
 */
import { h, icon } from "./dom.js";
import { fmtCost } from "./format.js";

/** The task's cumulative cost in USD, or null when no run reported one. */
export function taskCost(t) {
  if (t.run_history && t.run_history.length) {
    return t.run_history.some((r) => r.cost_usd != null) ? (t.total_cost_usd || 0) : null;
  }
  return t.run && t.run.cost_usd != null ? t.run.cost_usd : null;
}

/** "run $0.01 · repair $0.02": what each run cost, for a tooltip. */
export function costBreakdown(t) {
  const runs = t.run_history || [];
  if (runs.length < 2) return "cost";
  return "total of " + runs.map((r) => `${r.kind} ${fmtCost(r.cost_usd)}`).join(" · ");
}

/** A repair line with its `paths` shown as code. */
function withCode(text) {
  return String(text).split("`").map((part, i) => (i % 2 ? h("code", null, part) : part));
}

/** Everything the card and panel show about a repair, for change detection. */
export function repairSig(t) {
  return JSON.stringify([t.repair, (t.repairs || []).length, t.total_cost_usd]);
}

/** The live line on a card while the task's agent repairs its integration. */
export function repairCardLine(t) {
  if (t.status !== "in_progress" || !t.repair) return null;
  return h("div", { class: "card-repair", title: t.repair.summary }, icon("retry"), h("span", null,
    withCode(t.repair.summary)));
}

/** The task panel's repair notice: live, or the attempts and how each ended. */
export function repairPanel(t) {
  const live = t.status === "in_progress" ? t.repair : null;
  const done = (t.repairs || []).filter((r) => r.result);
  if (!live && !done.length) return null;
  const metLine = (r) => (r.met && r.met.length ? h("div", { class: "repair-met" },
    `Met the work of: ${r.met.join(", ")}`) : null);
  return h("div", { class: "notice info task-repair", role: "status" }, icon("retry"),
    h("div", { class: "notice-body" },
      live ? [h("strong", null, withCode(live.summary)),
        h("div", null, live.kind === "conflict"
          ? "Integrating this task conflicted with the plan branch; its agent is resolving the merge in its own session."
          : "The tests failed on the merged result; its agent is fixing them in its own session."),
        metLine(live)] : h("strong", null, "Integration repair"),
      done.length ? h("ol", { class: "repair-attempts" }, done.map((r) => h("li", null,
        `${r.kind === "conflict" ? "Conflict" : "Failing tests"}`
        + (r.paths && r.paths.length ? ` on ${r.paths.join(", ")}` : "")
        + ` (attempt ${r.attempt} of ${r.of}): `,
        h("span", { class: r.result === "repaired" ? "repair-ok" : "repair-failed" }, r.result)))) : null));
}
