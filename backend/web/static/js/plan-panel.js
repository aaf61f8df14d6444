/*
 * The plan panel (#plan/<id>): a plan's status, text, orchestrator feed, tasks,
 * and its actions: Start, Cancel, Retry, Land, Mark ready, Edit, filter, Delete.
 *
 * Owns: what a user does with one plan. Start runs the orchestrator (which
 * splits the plan into tasks; "Start with review" holds them for review.js first);
 * the plan's shape (shape.js: waves, dependency and overlap edges, live status); Land merges the plan's integration branch into
 * its base branch and shows the server's answer in the panel. The lifecycle badge, the
 * verification beside Land, "Land anyway" and the combined diff come from plan-verify.js.
 */
import { agentChip, agentLabel, agentSelect, defaultAgent } from "./agents.js";
import { api } from "./api.js";
import { h, icon, mdBlock, patch, statusBadge } from "./dom.js";
import { fmtCost, money } from "./cost.js";
import { enc, fmtCount, fmtDuration, fmtWhen, fullTime, shortSha } from "./format.js";
import { filteredPlan, togglePlanFilter } from "./board.js";
import { startBlockedReason } from "./readiness.js";
import { actionButton, messageNotice, patchActions, runAction, stat, twoStepDelete } from "./panel.js";
import { closePanel, isOpen } from "./router.js";
import { S, TASK_LABEL, dirty, dropPlan, isOrchestrating, planRecord, planStats, planTaskIds,
  setPlan } from "./store.js";
import { PlanDiff, landNotice, planBadge, planLifecycle, verificationLine, verificationSection } from "./plan-verify.js";
import { computeWaits, planItems, shapeView, taskLink } from "./shape.js";
import { budgetNotice, planBudget } from "./budget.js";
import { afterDiscard, inReplanReview, replanAction, replanNotice, replanSig } from "./replan.js";
import { scheduleFlush } from "./render.js";
import { toast } from "./toast.js";
import { DetailView } from "./view.js";

export class PlanView extends DetailView {
  /** The agent choice shown next to Start (made on first use: the base class renders early). */
  get startAgent() {
    if (!this._startAgent) {
      this._startAgent = agentSelect({ id: "start-agent", name: "agent", fallback: defaultAgent(),
        label: "Agent for the plan's tasks" });
      this._startAgent.addEventListener("change", () => { this.startAgentTouched = true; });
    }
    return this._startAgent;
  }
  constructor(id) {
    super("plan", id, {
      actionsLabel: "Plan actions",
      contentOpen: false, // opened on first update while the plan can still be edited
      feedEmpty: "The orchestrator’s activity appears here once the plan starts.",
      feedLabel: "Orchestrator activity",
    });
    this.landResult = null;
    this.landEl = h("div", { "aria-live": "polite" });
    this.verifyEl = h("div");
    this.diff = new PlanDiff(id);
    this.feedHeadAside = h("span", { class: "aside" });
    this.tasksEl = h("div");
    this.reviewEl = h("div");
    this.replanEl = h("div", { "aria-live": "polite" });
    this.budgetEl = h("div");
    this.shapeEl = h("div");
    this.shapeSection = h("section", { class: "section plan-shape", "aria-label": "Shape", hidden: true },
      h("div", { class: "section-head" }, "Shape", h("span", { class: "aside" }, "waves run in order")), this.shapeEl);
    this.tasksAside = h("span", { class: "aside" });
    this.root = this.frame(this.reviewEl, this.replanEl, this.budgetEl, this.landEl, this.verifyEl, this.diff.el, this.shapeSection, this.contentEl,
      h("section", { class: "section orchestrator", "aria-label": "Orchestrator" },
        h("div", { class: "section-head" }, "Orchestrator", this.feedHeadAside), this.feed.el),
      h("section", { class: "section plan-tasks", "aria-label": "Tasks" },
        h("div", { class: "section-head" }, "Tasks", this.tasksAside), this.tasksEl));
    this.verificationFetched = null; // the summary state the detail was last fetched again for
    this.load();
  }
  async load() {
    this.feed.load(); // the log and the record are fetched together (the feed needs nothing from the record)
    await this.loadDetail();
  }
  detailLoaded(detail) {
    if (!S.plans.has(this.id) && detail) { // not in the snapshot yet (just created): show it on the board too
      if (detail.orchestrating) S.orchestrating.add(detail.id);
      setPlan(planRecord(detail));
      scheduleFlush();
    }
  }
  plan() {
    return S.plans.get(this.id) || (this.detail && !this.missing ? this.detail : null);
  }
  /**
   * List summaries leave the verification's output out: the fetched detail has it. The detail
   * is used only for the same run in the same state; when the summary moved on (running →
   * failed), the detail is fetched again once for that state, so the output is never missing.
   */
  withVerificationOutput(p) {
    const sv = p.verification;
    if (!sv || "output_tail" in sv) return p;
    const dv = this.detail && this.detail.verification;
    if (dv && dv.started === sv.started && dv.status === sv.status) return { ...p, verification: dv };
    const key = `${sv.started}|${sv.status}`;
    if (this.detail && sv.status !== "running" && this.verificationFetched !== key) {
      this.verificationFetched = key;
      this.loadDetail();
    }
    return p;
  }
  onLog(kind, id, ev) {
    if (kind === "plan" && id === this.id) this.feed.push(ev);
  }
  update(force) {
    const p = this.plan();
    if (!p) {
      patch(this.titleEl, "missing", () => (this.missing || (S.synced && this.detail)) ? "Plan not found" : "Loading…");
      patch(this.subEl, "missing", () => this.missing ? "It may have been deleted." : "");
      patch(this.actionsEl, "missing", () => []);
      return;
    }
    const s = planStats(p.id);
    const orch = isOrchestrating(p);
    const lc = planLifecycle(p);
    patch(this.titleEl, p.title, () => p.title);
    patch(this.subEl, [p.status, orch, p.id, p.created, p.modified, JSON.stringify(lc)].join("|"), () => [
      planBadge(p, lc, false),
      lc.detail && (p.status === "done" || p.landed) ? h("span", { class: "lifecycle-detail" }, lc.detail) : null,
      h("span", { class: "mono" }, p.id),
      h("span", { title: fullTime(p.created) }, `created ${fmtWhen(p.created)}`),
      p.modified !== p.created ? h("span", { title: fullTime(p.modified) }, `updated ${fmtWhen(p.modified)}`) : null,
    ]);
    const confirming = this.confirmDelete && Date.now() < this.confirmDelete;
    const unfinished = s.pending + s.in_progress;
    const blocked = startBlockedReason();
    patchActions(this.actionsEl, [p.status, orch, this.busy, confirming, unfinished, filteredPlan() === p.id,
      s.total, blocked, replanSig(p), JSON.stringify([lc, p.verification])].join("|"), () => {
      const out = [];
      const startable = p.status === "draft" || p.status === "ready";
      if (startable && !orch) {
        if (!this.startAgentTouched) this.startAgent.value = p.agent || "";
        out.push(h("label", { class: "start-agent", title: "the agent that carries out the plan's tasks" },
          "Tasks run with", this.startAgent));
      }
      if (startable || p.status === "executing") {
        out.push(actionButton(this, "start", "Start", {
          kind: startable && !orch && !blocked ? "primary" : "",
          icon: "play",
          busyLabel: "Starting…",
          disabled: !startable || orch || Boolean(blocked),
          title: orch ? "The orchestrator is running" : blocked
            || "Run the orchestrator: it splits the plan into tasks",
          onclick: () => this.start(),
        }));
      }
      if (startable && !orch) {
        out.push(actionButton(this, "start-review", "Start with review", {
          icon: "play", busyLabel: "Starting…",
          title: "Run the orchestrator, then let me review its tasks before any runs",
          onclick: () => this.start(true),
        }));
      }
      if (p.status === "review") {
        out.push(h("a", { class: "btn primary", href: `#review/${enc(p.id)}`, "data-action": "review" },
          icon("edit"), "Review tasks"));
        out.push(actionButton(this, "approve", "Approve", {
          icon: "play", busyLabel: "Approving…", title: "Publish the proposed tasks as they are",
          onclick: () => this.approve(),
        }));
        out.push(actionButton(this, "discard", "Discard", {
          kind: "danger", busyLabel: "Discarding…", title: `Drop the proposals; ${afterDiscard(p)}`,
          onclick: () => this.discard(),
        }));
      }
      if (orch) {
        out.push(actionButton(this, "cancel", "Cancel", {
          kind: "danger", icon: "stop", busyLabel: "Cancelling…", title: "Stop the orchestrator",
          onclick: () => this.cancel(),
        }));
      }
      if (p.status === "failed") {
        out.push(actionButton(this, "retry", "Retry", {
          kind: blocked ? "" : "primary", icon: "retry", busyLabel: "Retrying…",
          title: blocked || "Run the orchestrator again", disabled: Boolean(blocked),
          onclick: () => this.retry(),
        }));
      }
      if (blocked && (startable || p.status === "failed")) {
        out.push(h("span", { class: "start-blocked", "data-role": "start-blocked" }, blocked));
      }
      out.push(replanAction(this, p, orch));
      if (p.status === "done" && !p.landed) {
        out.push(actionButton(this, "land", "Land", {
          kind: lc.state === "ready_to_land" ? "primary" : "", icon: "land", busyLabel: "Landing…",
          title: p.integration_branch ? `Merge ${p.integration_branch} into ${p.base_branch || "the base branch"}`
            : "Merge the plan's work into the base branch",
          onclick: () => this.land(),
        }));
        out.push(verificationLine(p, lc));
      }
      if (p.status === "draft" && !orch) {
        out.push(actionButton(this, "ready", "Mark ready", {
          icon: "ready", title: "Mark the plan as ready to start", onclick: () => this.markReady(),
        }));
      }
      if (startable && !orch) {
        out.push(h("a", { class: "btn", href: `#edit/${enc(p.id)}`, "data-action": "edit" }, icon("edit"), "Edit"));
      }
      out.push(h("span", { class: "sep" }));
      if (s.total) {
        out.push(h("button", {
          class: "btn ghost", type: "button", "data-action": "filter",
          onclick: () => {
            togglePlanFilter(p.id);
            this.update(true);
          },
        }, icon("filter"), filteredPlan() === p.id ? "Show all tasks" : "Show only its tasks"));
      }
      if (!orch && p.status !== "executing") {
        out.push(twoStepDelete(this, "Delete", () => this.remove()));
      }
      return out;
    });
    patch(this.messageEl, JSON.stringify(this.message), () => messageNotice(this.message));
    patch(this.errorEl, [p.status, p.error].join("|"), () => p.status === "failed" ? h("div", {
      class: "notice error plan-error", role: "alert" }, icon("alert"),
    h("div", { class: "notice-body" }, h("strong", null, "The plan failed"),
      p.error || "The orchestrator stopped without saying why. See its activity below.",
      h("div", { style: "margin-top: 6px; color: var(--muted)" },
        "Retry runs the orchestrator again; the plan text stays as it is."))) : null);
    const o = p.orchestration || {};
    const budget = planBudget(p);
    patch(this.statsEl, JSON.stringify([s, o, p.integration_branch, p.base_branch, p.base_commit, budget, p.landed]), () => {
      if (!s.total && !p.orchestration && !p.integration_branch) return null;
      const items = [
        stat("Tasks", s.total ? `${s.completed}/${s.total} done` : "—"),
        stat("Failed", s.total ? String(s.failed) : "—"),
        stat("Cost", fmtCost(s.cost), { title: "total: orchestrator, re-plans and all tasks" }),
      ];
      if (budget.limit != null) {
        items.push(stat("Budget", money(budget.limit), {
          title: `${money(budget.spent)} of ${money(budget.limit)} spent${budget.reached
            ? ": waiting tasks do not start" : ""}` }));
      }
      if (s.superseded) items.push(stat("Superseded", String(s.superseded), { title: "failed tasks replaced by a re-plan" }));
      if (p.orchestration) {
        items.push(
          stat("Planning", fmtCost(o.cost_usd), { title: "cost of the orchestrator run" }),
          stat("Tokens", `${fmtCount(o.input_tokens)} / ${fmtCount(o.output_tokens)}`,
            { title: "orchestrator tokens: input / output" }),
          stat("Turns", o.num_turns == null ? "—" : String(o.num_turns)),
          stat("Planned by", o.agent ? agentLabel(o.agent) : "—", o.model ? { title: `model ${o.model}` } : undefined),
          stat("Duration", fmtDuration(o.duration_ms), { title: "orchestrator run time" }));
      }
      const out = [h("dl", { class: "stats plan-stats" }, items)];
      if (p.integration_branch || p.base_branch) {
        out.push(h("dl", { class: "kv" },
          p.integration_branch ? [h("dt", null, "Integration branch"), h("dd", { class: "mono" }, p.integration_branch,
            p.landed && p.landed.branch_deleted ? h("span", { class: "lifecycle-detail" }, " (deleted after Land)") : null)] : null,
          p.base_branch ? [h("dt", null, "Base"), h("dd", { class: "mono" },
            `${p.base_branch}${p.base_commit ? ` @ ${shortSha(p.base_commit)}` : ""}`)] : null));
      }
      return out;
    });
    patch(this.reviewEl, JSON.stringify([p.status, (p.proposals || []).length, inReplanReview(p)]), () => p.status === "review"
      ? h("div", { class: "notice info review-notice", role: "status" }, icon("info"),
        h("div", { class: "notice-body" }, h("strong", null, `${(p.proposals || []).length} ${inReplanReview(p)
          ? "replacement" : "proposed"} task(s) await your review`),
          `Nothing runs until you approve. Review them to edit, drop or add tasks; on Discard ${afterDiscard(p)}.`))
      : null);
    patch(this.replanEl, JSON.stringify([orch, (p.replans || []).slice(-1)]), () => replanNotice(p, orch));
    patch(this.budgetEl, JSON.stringify([budget, this.busy, s.pending]), () => budgetNotice(this, p));
    this.updateShape(p);
    patch(this.landEl, JSON.stringify([this.landResult, this.busy]), () => landNotice(this.landResult, () => this.land(true)));
    const pv = this.withVerificationOutput(p);
    patch(this.verifyEl, JSON.stringify([pv.verification, p.fixup_rounds, lc.state, this.busy]), () =>
      p.status === "done" ? verificationSection(this, pv, lc) : null);
    this.diff.update(p, lc);
    // content: open by default while the plan can still be edited
    if (this.contentEl._status === undefined) {
      this.contentEl._status = p.status;
      this.contentEl.open = p.status === "draft" || p.status === "ready" || !(p.tasks || []).length;
    }
    const content = p.content !== undefined ? p.content : this.detail ? this.detail.content : undefined;
    patch(this.contentEl, JSON.stringify([p.summary, content]), () => [
      h("summary", null, "Plan"),
      h("div", { class: "content-box" },
        p.summary ? h("p", { class: "plan-summary", style: "margin-top: 0; color: var(--text-2)" }, p.summary) : null,
        content === undefined ? h("div", { class: "empty-hint" }, "Loading…")
          : content.trim() ? mdBlock(content, "md plan-body") : h("div", { class: "empty-hint" }, "No plan text.")),
    ]);
    patch(this.feedHeadAside, [orch, o.outcome].join("|"), () =>
      orch ? [h("span", { class: "spinner", style: "display:inline-block; vertical-align:-1px; margin-right:6px" }),
        "running"] : o.outcome ? `ended: ${o.outcome}` : "");
    patch(this.tasksAside, s.total ? `${s.completed}/${s.total} done` : "", () => s.total ? `${s.completed}/${s.total} done` : "");
    const ids = planTaskIds(p);
    const rows = ids.map((tid) => S.tasks.get(tid) || (this.detail && (this.detail.task_details || []).find((x) => x.id === tid)))
      .filter(Boolean);
    patch(this.tasksEl, JSON.stringify([orch, rows.map((t) => [t.id, t.title, t.status, t.run && t.run.cost_usd, t.agent, t.superseded_by])]), () => {
      if (!rows.length) {
        return h("div", { class: "empty-hint" }, orch ? "The orchestrator is reading the plan; its tasks will appear here."
          : p.status === "failed" ? "No tasks were created." : "Start the plan to split it into tasks.");
      }
      return h("ul", { class: "task-list" }, rows.map((t) => h("li", null,
        h("a", { href: `#task/${enc(t.id)}`, "data-task-id": t.id },
          statusBadge(t.status, TASK_LABEL[t.status], t.status === "in_progress"),
          t.superseded_by != null ? h("span", { class: "badge", "data-status": "superseded",
            title: `Replaced by re-plan ${t.superseded_by}` }, "superseded") : null,
          h("span", { class: "t-title" }, t.title),
          agentChip(t.agent || (t.run && t.run.agent)),
          t.run && t.run.cost_usd ? h("span", { class: "t-cost" }, fmtCost(t.run.cost_usd)) : null))));
    });
  }
  /** The shape view: shown once a task has files or dependencies (a flat plan needs no graph). */
  updateShape(p) {
    const items = planItems(p);
    const shaped = items.some((t) => t.depends_on.length || t.files.length);
    this.shapeSection.hidden = !shaped;
    patch(this.shapeEl, JSON.stringify(shaped ? items : []), () => {
      if (this.shapeEl.firstChild && this.shapeEl.firstChild._dispose) this.shapeEl.firstChild._dispose();
      return shaped ? shapeView(items, { link: taskLink, waits: computeWaits(items) }) : null;
    });
  }
  dispose() {
    if (this.shapeEl.firstChild && this.shapeEl.firstChild._dispose) this.shapeEl.firstChild._dispose();
  }
  async start(review = false) {
    const choice = this.startAgent.value;
    const body = { ...(review ? { review: true } : {}), ...(choice ? { agent: choice } : {}) };
    const r = await runAction(this, review ? "start-review" : "start", () => api("POST",
      `/agent/plans/${enc(this.id)}/start`, Object.keys(body).length ? body : undefined));
    if (r) this.orchestratorStarted();
  }
  async approve() {
    await runAction(this, "approve", () => api("POST", `/agent/plans/${enc(this.id)}/approve`));
  }
  async discard() {
    await runAction(this, "discard", () => api("POST", `/agent/plans/${enc(this.id)}/discard`));
  }
  /** Show the orchestrator as running at once, before its plan.orchestration event arrives. */
  orchestratorStarted() {
    S.orchestrating.add(this.id);
    dirty.plans.add(this.id);
    scheduleFlush();
  }
  async cancel() {
    await runAction(this, "cancel", () => api("POST", `/agent/plans/${enc(this.id)}/cancel`));
  }
  async retry() {
    const r = await runAction(this, "retry", async () => {
      await api("POST", `/agent/plans/${enc(this.id)}/retry`);
      return api("POST", `/agent/plans/${enc(this.id)}/start`);
    });
    if (r) this.orchestratorStarted();
  }
  async markReady() {
    await runAction(this, "ready", () => api("POST", `/agent/plans/${enc(this.id)}/ready`));
  }
  async land(force = false) {
    this.landResult = null;
    try {
      this.busy = "land";
      this.update(true);
      const r = await api("POST", `/agent/plans/${enc(this.id)}/land`, force ? { force: true } : undefined);
      this.landResult = { ok: true, message: r.message, commit: r.commit, branch: r.branch };
    } catch (err) {
      this.landResult = { ok: false, message: err.message };
    } finally {
      this.busy = null;
      if (isOpen(this)) this.update(true);
    }
  }
  async remove() {
    const r = await runAction(this, "delete", () => api("DELETE", `/agent/plans/${enc(this.id)}`));
    if (r) {
      toast("Plan deleted.");
      dropPlan(this.id);
      scheduleFlush();
      closePanel();
    }
  }
}
