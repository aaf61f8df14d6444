/*
 * Landing standalone tasks' work: the shipyard/tasks branch onto the base branch.
 *
 * Owns: the Land button of a completed standalone task's panel and the notice
 * that says what landing did (or why it was refused), as the plan panel does
 * for a plan's integration branch.
 */
import { api } from "./api.js";
import { shortSha } from "./format.js";
import { actionButton } from "./panel.js";
import { isOpen } from "./router.js";

/** The Land button for a view (a TaskView); the outcome goes to view.message. */
export function landButton(view) {
  return actionButton(view, "land", "Land", {
    icon: "land", busyLabel: "Landing…",
    title: "Merge shipyard/tasks (every standalone task integrated so far) into the base branch",
    onclick: () => land(view),
  });
}

async function land(view) {
  view.busy = "land";
  view.message = null;
  view.update(true);
  try {
    const r = await api("POST", "/agent/standalone/land");
    view.message = { kind: "ok", title: "Landed",
      text: `${r.message}${r.commit ? ` (${shortSha(r.commit)} on ${r.branch})` : ""}` };
  } catch (err) {
    view.message = { kind: "error", title: "Not landed", text: err.message };
  } finally {
    view.busy = null;
    if (isOpen(view)) view.update(true);
  }
}
