/*
 * Integration repair, for task cards and the task panel.
 *
 * Owns: how a task's repair shows ("repairing conflict on `app.py` (attempt 1 of 1)",
 * live while the agent resolves it; the attempts and how each ended afterwards).
 * What the repairs cost is added up with every other run in cost.js. See
 * docs/convergence.md.
 */
import { h, icon } from "./dom.js";

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
