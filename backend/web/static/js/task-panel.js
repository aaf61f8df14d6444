/*
 * The task panel (#task/<id>): a task's status, run stats, description, the
 * agent's live activity feed and the task's diff, with Rerun and Cancel.
 *
 * Owns: what a user watches while one agent works: the running duration ticks
 * every second, the diff reloads when the run ends or the agent commits, and a
 * failed task shows its reason and error log.
 */
import { agentLabel } from "./agents.js";
import { api } from "./api.js";
import { h, icon, mdBlock, patch, statusBadge } from "./dom.js";
import { renderDiff } from "./diff.js";
import { costBreakdown, fmtCost, taskCost } from "./cost.js";
import { repairPanel, repairSig } from "./repair.js";
import { enc, fmtCount, fmtDuration, fmtWhen, fullTime, shortSha } from "./format.js";
import { actionButton, messageNotice, patchActions, runAction, stat } from "./panel.js";
import { isOpen } from "./router.js";
import { landButton } from "./standalone.js";
import { S, TASK_LABEL, changedNothing, setTask } from "./store.js";
import { taskWaits, waitText } from "./shape.js";
import { scheduleFlush } from "./render.js";
import { DetailView } from "./view.js";

export class TaskView extends DetailView {
  constructor(id) {
    super("task", id, {
      actionsLabel: "Task actions",
      contentOpen: true,
      feedEmpty: "The agent’s activity appears here once the task starts.",
      feedLabel: "Agent activity",
    });
    this.diffTimer = null;
    this.diffSeen = null;
    this.durationEl = null;
    this.feedAside = h("span", { class: "aside" });
    this.diffEl = h("div", { class: "diff" }, h("div", { class: "empty-hint" }, "Loading…"));
    this.diffAside = h("span", { class: "aside" });
    this.root = this.frame(this.contentEl,
      h("section", { class: "section activity", "aria-label": "Activity" },
        h("div", { class: "section-head" }, "Activity", this.feedAside), this.feed.el),
      h("section", { class: "section changes", "aria-label": "Changes" },
        h("div", { class: "section-head" }, "Changes", this.diffAside,
          h("button", { class: "btn small ghost", type: "button", title: "Reload the diff",
            onclick: () => this.loadDiff() }, icon("refresh"), "Refresh")),
        this.diffEl));
    this.ticker = setInterval(() => this.tick(), 1000);
    this.load();
  }
  task() {
    return S.tasks.get(this.id) || (this.detail && !this.missing ? this.detail : null);
  }
  async load() {
    this.feed.load(); // the log and the record are fetched together (the feed needs nothing from the record)
    await this.loadDetail();
    this.loadDiff();
  }
  async loadDiff() {
    clearTimeout(this.diffTimer);
    this.diffTimer = null;
    try {
      const result = await api("GET", `/agent/tasks/${enc(this.id)}/diff`);
      if (!isOpen(this)) return;
      const status = this.task() ? this.task().status : null;
      patch(this.diffEl, JSON.stringify([status, result.source, result.diff.length, result.diff.slice(0, 2000),
        result.diff.slice(-2000)]), () => renderDiff(result, status));
      const files = result.files || [];
      this.diffAside.textContent = files.length ? `${files.length} file${files.length === 1 ? "" : "s"}` : "";
    } catch (err) {
      if (isOpen(this) && err.status !== 404) {
        patch(this.diffEl, "error:" + err.message, () => h("div", { class: "empty-hint" }, `Could not load the diff: ${err.message}`));
      }
    }
  }
  scheduleDiff(delay = 400) {
    clearTimeout(this.diffTimer);
    this.diffTimer = setTimeout(() => this.loadDiff(), delay);
  }
  onLog(kind, id, ev) {
    if (kind !== "task" || id !== this.id) return;
    this.feed.push(ev);
    if (!ev) return;
    if (["integrated", "completed", "failed", "result"].includes(ev.kind)) this.scheduleDiff();
    // an agent that commits as it goes (git commit in Bash) changes its branch mid-run
    else if (ev.kind === "tool_result" && ev.data && ev.data.name === "Bash") this.scheduleDiff(1500);
  }
  onTaskChange(task, type) {
    if (task.id !== this.id) return;
    if (type === "task.status") {
      if (task.status === "failed") this.loadDetail(); // the error log is not in the event
      this.scheduleDiff();
    }
  }
  dispose() {
    clearInterval(this.ticker);
    clearTimeout(this.diffTimer);
  }
  tick() {
    const t = this.task();
    if (!t || !this.durationEl || t.status !== "in_progress" || !t.started) return;
    this.durationEl.textContent = fmtDuration(Date.now() - new Date(t.started).getTime());
  }
  update() {
    const t = this.task();
    if (!t) {
      patch(this.titleEl, "missing", () => (this.missing ? "Task not found" : "Loading…"));
      patch(this.subEl, "missing", () => this.missing ? "It may have been deleted." : "");
      return;
    }
    const plan = t.plan_id ? S.plans.get(t.plan_id) : null;
    patch(this.titleEl, t.title, () => t.title);
    patch(this.subEl, [t.status, t.outcome, t.task_type, t.id, t.plan_id, plan && plan.title, t.attempts].join("|"), () => [
      changedNothing(t) ? statusBadge("no_changes", "no changes")
        : statusBadge(t.status, TASK_LABEL[t.status], t.status === "in_progress"),
      h("span", { class: "chip" }, t.task_type),
      h("span", { class: "mono" }, t.id),
      t.plan_id ? h("a", { href: `#plan/${enc(t.plan_id)}`, class: "plan-link" }, icon("plan"),
        plan ? plan.title : `plan ${t.plan_id}`) : h("span", null, "standalone task"),
      t.attempts ? h("span", null, `attempt ${t.attempts}`) : null,
    ]);
    const nothing = changedNothing(t);
    patchActions(this.actionsEl, [t.status, this.busy, nothing, t.plan_id].join("|"), () => {
      const out = [];
      if (t.status === "failed" || nothing) {
        out.push(actionButton(this, "rerun", "Rerun", {
          kind: "primary", icon: "retry", busyLabel: "Requeueing…", title: "Put the task back in the queue",
          onclick: () => this.rerun(),
        }));
      }
      if (t.status === "completed" && !t.plan_id && !nothing) {
        out.push(landButton(this));
      }
      if (t.status === "pending" || t.status === "in_progress") {
        out.push(actionButton(this, "cancel", "Cancel", {
          kind: "danger", icon: "stop", busyLabel: "Cancelling…",
          title: t.status === "in_progress" ? "Stop the agent; the task fails as cancelled" : "Cancel before it starts",
          onclick: () => this.cancel(),
        }));
      }
      return out;
    });
    patch(this.messageEl, JSON.stringify(this.message), () => messageNotice(this.message));
    const errorLog = this.detail && this.detail.status === "failed" ? this.detail.error_log : null;
    const waits = taskWaits(t);
    patch(this.errorEl, JSON.stringify([t.status, t.error, errorLog, waits, repairSig(t)]), () => [repairPanel(t), waits.length
      ? h("div", { class: `notice ${waits.some((w) => w.held) ? "error" : "info"} task-waits`, role: "status" },
        icon(waits.some((w) => w.held) ? "alert" : "info"),
        h("div", { class: "notice-body" }, h("strong", null, "Not started yet"),
          waits.map((w) => h("div", { "data-reason": w.reason }, w.id
            ? h("a", { href: `#task/${enc(w.id)}` }, waitText(w)) : waitText(w)))))
      : t.status === "failed"
      ? h("div", { class: "notice error task-error", role: "alert" }, icon("alert"),
        h("div", { class: "notice-body" }, h("strong", null, "The task failed"), t.error || "No reason was recorded.",
          errorLog ? h("details", { class: "error-log", open: true },
            h("summary", { style: "cursor: pointer; margin-top: 6px" }, "Error log"), h("pre", null, errorLog)) : null))
      : nothing ? messageNotice({ kind: "info", title: "No changes",
        text: "The agent finished without changing any file, so there was nothing to merge. Rerun it if "
          + "that is not what you expected." })
        : t.status === "completed" && t.result ? messageNotice({ kind: "ok", text: `Completed: ${t.result}` }) : null]);
    const run = t.run || {};
    patch(this.statsEl, JSON.stringify([run, t.branch, t.base_commit, t.started, t.finished, t.status, t.agent,
      t.total_cost_usd, (t.run_history || []).length]), () => {
      const running = t.status === "in_progress" && t.started;
      this.durationEl = h("dd", { title: "duration" },
        running ? fmtDuration(Date.now() - new Date(t.started).getTime()) : fmtDuration(run.duration_ms));
      const ran = Boolean(t.run || running);
      return [
        ran ? h("dl", { class: "stats task-stats" },
          stat("Agent", (run.agent || t.agent) ? agentLabel(run.agent || t.agent) + (run.model ? ` · ${run.model}` : "")
            : "—"),
          stat("Cost", fmtCost(taskCost(t)), taskCost(t) == null ? { title: "this agent reports no cost" }
            : { title: costBreakdown(t) }),
          stat("Tokens", `${fmtCount(run.input_tokens)} / ${fmtCount(run.output_tokens)}`,
            { title: "input / output tokens" }),
          stat("Turns", run.num_turns == null ? "—" : String(run.num_turns)),
          h("div", { class: "stat" }, h("dt", null, running ? "Running for" : "Duration"), this.durationEl),
          stat("Outcome", run.outcome || (t.status === "in_progress" ? "running" : "—"))) : null,
        !ran && !t.branch ? null : h("dl", { class: "kv" },
          h("dt", null, "Branch"), h("dd", { class: "mono" }, t.branch || (t.status === "completed" ? "merged and removed" : "—")),
          t.base_commit ? [h("dt", null, "Base commit"), h("dd", { class: "mono" }, shortSha(t.base_commit))] : null,
          t.started ? [h("dt", null, "Started"), h("dd", { title: fullTime(t.started) }, fmtWhen(t.started))] : null,
          t.finished ? [h("dt", null, "Finished"), h("dd", { title: fullTime(t.finished) }, fmtWhen(t.finished))] : null),
      ];
    });
    // list records are summaries without the body: it comes with the task's own detail
    const content = t.content != null ? t.content : this.detail ? this.detail.content : null;
    patch(this.contentEl, content, () => [h("summary", null, "Task"),
      h("div", { class: "content-box" }, content && content.trim() ? mdBlock(content, "md task-body")
        : h("div", { class: "empty-hint" }, content == null ? "Loading…" : "No description."))]);
    patch(this.feedAside, t.status, () => t.status === "in_progress"
      ? [h("span", { class: "spinner", style: "display:inline-block; vertical-align:-1px; margin-right:6px" }), "running"] : "");
  }
  async rerun() {
    const r = await runAction(this, "rerun", () => api("POST", `/agent/tasks/${enc(this.id)}/rerun`));
    if (r) {
      setTask(r);
      this.detail = { ...r, error_log: null };
      scheduleFlush();
    }
  }
  async cancel() {
    const r = await runAction(this, "cancel", () => api("POST", `/agent/tasks/${enc(this.id)}/cancel`));
    if (r) {
      setTask(r);
      scheduleFlush();
      this.loadDetail();
    }
  }
}
