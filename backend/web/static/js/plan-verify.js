/*
 * A plan as people read it: its lifecycle, its verification beside Land, its combined diff.
 *
 * Owns: planLifecycle(p), the client's copy of backend/plan_state.py, computed from S (the
 * plan, its tasks, the orchestrators and verifications running) so cards and panels follow the
 * event stream without refetching; the lifecycle badge (a done plan is not a green "done"
 * while its tasks run); the verification line shown beside Land; the verification section
 * (result, output, Verify again); the notice after Land, with "Land anyway" when the refusal
 * was about verification; and the combined diff of the whole plan, loaded when opened.
 */
import { api } from "./api.js";
import { renderDiff } from "./diff.js";
import { h, icon, patch } from "./dom.js";
import { enc, fmtDuration, fullTime, shortSha } from "./format.js";
import { PLAN_LABEL, S, isOrchestrating, planTaskIds } from "./store.js";

const LABELS = {
  draft: "draft", ready: "ready to start", orchestrating: "orchestrating", in_review: "tasks in review",
  orchestration_failed: "orchestration failed", needs_attention: "needs attention", verifying: "verifying",
  unverified: "not verified", ready_to_land: "ready to land", nothing_to_land: "nothing to land", landed: "landed",
};

/** {state, label, detail, completed, failed, total} — the same answer the API gives as `lifecycle`. */
export function planLifecycle(p) {
  // tasks a re-plan superseded are no longer the plan's work (replan.js)
  const tasks = planTaskIds(p).map((id) => S.tasks.get(id)).filter((t) => t && t.superseded_by == null);
  const total = tasks.length;
  const completed = tasks.filter((t) => t.status === "completed").length;
  const failed = tasks.filter((t) => t.status === "failed").length;
  const unfinished = total - completed - failed;
  const v = p.verification || {};
  const st = (state, detail, label) => ({ state, label: label || LABELS[state], detail: detail || null, completed, failed, total });
  if (p.landed) {
    return { ...st("landed", `on ${p.landed.branch} as ${shortSha(p.landed.commit)}${p.landed.forced ? " (forced past verification)" : ""}`),
      commit: p.landed.commit };
  }
  if (isOrchestrating(p)) return st("orchestrating");
  if (p.status === "draft") return st("draft");
  if (p.status === "ready") return st("ready");
  if (p.status === "review") return st("in_review", "approve or discard the proposed tasks");
  if (p.status === "failed") return st("orchestration_failed", p.error);
  if (!total) return st("nothing_to_land", "the plan has no tasks");
  if (unfinished) {
    return st("running", `${completed} of ${total} task(s) done${failed ? `, ${failed} failed` : ""}`,
      `running (${completed} of ${total})`);
  }
  if (failed) {
    return st("needs_attention", `${failed} of ${total} task(s) failed: rerun, edit or delete them, or land what is integrated with force`);
  }
  if (S.verifying.has(p.id) || v.status === "running") {
    return st("verifying", v.status === "running" ? `running ${v.command || "the verify command"} on the plan branch` : "about to verify");
  }
  if (tasks.every((t) => t.outcome === "no_changes")) return st("nothing_to_land", "no task changed anything");
  if (v.status === "failed") {
    const rounds = p.fixup_rounds || 0;
    const spent = rounds ? ` after ${rounds} fix-up round${rounds !== 1 ? "s" : ""}` : "";
    return st("needs_attention", `verification failed${spent}${v.reason ? `: ${v.reason}` : ""}`);
  }
  if (v.status === "passed") return st("ready_to_land", `verified at ${shortSha(v.commit)}`);
  if (v.status === "skipped") return st("ready_to_land", `not verified: ${v.reason || "no verify command"}`);
  return st("unverified", "verify the plan branch before landing (or land with force)");
}

/** The plan's badge: the seed's status until its tasks exist, then the lifecycle. */
export function planBadge(p, lc, large) {
  const seed = !p.landed && p.status !== "done";
  const label = seed ? PLAN_LABEL[p.status] : lc.label;
  const spinning = lc.state === "orchestrating" || lc.state === "verifying" || lc.state === "running";
  return h("span", { class: `badge${large ? " large" : ""}`, "data-status": p.status, "data-lifecycle": lc.state,
    title: lc.detail || label }, spinning ? h("span", { class: "spinner" }) : null, label);
}

/** The line beside Land: what the verification says about landing now. */
export function verificationLine(p, lc) {
  const v = p.verification;
  let kind = "muted";
  let text;
  let glyph = "info";
  if (lc.state === "verifying") {
    return h("span", { class: "verify-line running", "data-role": "verification", "data-verification": "running" },
      h("span", { class: "spinner" }), "Verifying the plan branch…");
  }
  if (!v) {
    text = lc.state === "unverified" ? "Not verified" : null;
    kind = "warn";
    glyph = "alert";
  } else if (v.status === "passed") {
    kind = "ok"; glyph = "check";
    text = `Verified at ${shortSha(v.commit)}${v.duration_s != null ? ` · ${fmtDuration(v.duration_s * 1000)}` : ""}`;
  } else if (v.status === "failed") {
    kind = "bad"; glyph = "alert";
    text = `Verification failed at ${shortSha(v.commit)}`;
  } else if (v.status === "skipped") {
    text = `Not verified: ${v.reason || "no verify command"}`;
  }
  if (!text) return null;
  return h("span", { class: `verify-line ${kind}`, "data-role": "verification", "data-verification": v ? v.status : "none",
    title: v && v.command ? `${v.command}${v.finished ? ` — ${fullTime(v.finished)}` : ""}` : "" }, icon(glyph), text);
}

/** The verification section of the plan panel: command, result, output, Verify again. */
export function verificationSection(view, p, lc) {
  const v = p.verification;
  if (!v && lc.state !== "unverified") return null;
  const canVerify = lc.state === "ready_to_land" || lc.state === "needs_attention" || lc.state === "unverified";
  const again = !failedTasks(lc) && canVerify && !p.landed
    ? h("button", { class: "btn", type: "button", "data-action": "verify", disabled: Boolean(view.busy),
      title: "Run the verify command on the plan branch's tip again", onclick: () => verifyAgain(view) },
    icon("refresh"), v ? "Verify again" : "Verify") : null;
  if (!v) {
    return h("section", { class: "section plan-verification", "aria-label": "Verification" },
      h("div", { class: "section-head" }, "Verification", again),
      h("div", { class: "empty-hint" }, "This plan's branch has not been verified."));
  }
  const rows = [
    ["Result", v.status === "running" ? "running…" : v.status],
    ["Commit", shortSha(v.commit)],
    v.command ? ["Command", v.command] : null,
    v.duration_s != null ? ["Took", fmtDuration(v.duration_s * 1000)] : null,
    v.exit_code != null ? ["Exit code", String(v.exit_code)] : null,
    p.fixup_rounds ? ["Fix-up rounds", String(p.fixup_rounds)] : null,
    v.reason ? ["Why", v.reason] : null,
  ].filter(Boolean);
  return h("section", { class: "section plan-verification", "aria-label": "Verification", "data-verification": v.status },
    h("div", { class: "section-head" }, "Verification", h("span", { class: "aside" }, v.finished ? fullTime(v.finished) : ""), again),
    h("dl", { class: "kv" }, rows.map(([k, val]) => [h("dt", null, k), h("dd", { class: k === "Command" || k === "Commit" ? "mono" : null }, val)])),
    v.output_tail ? h("details", { class: "verify-output", open: v.status === "failed" && !p.landed },
      h("summary", null, "Output (last lines)"), h("pre", null, v.output_tail)) : null);
}

function failedTasks(lc) {
  return lc.state === "needs_attention" && lc.failed > 0;
}

async function verifyAgain(view) {
  view.busy = "verify";
  view.message = null;
  view.update(true);
  try {
    await api("POST", `/agent/plans/${enc(view.id)}/verify`);
    S.verifying.add(view.id);
  } catch (err) {
    view.message = { kind: "error", text: err.message };
  } finally {
    view.busy = null;
    view.update(true);
  }
}

/** The notice after a Land: what happened, and "Land anyway" when only verification stood in the way. */
export function landNotice(result, onForce) {
  if (!result) return null;
  if (result.ok) {
    return h("div", { class: "notice ok", role: "status" }, icon("check"),
      h("div", { class: "notice-body" }, h("strong", null, "Landed"),
        `${result.message}${result.commit ? ` (${shortSha(result.commit)} on ${result.branch})` : ""}`));
  }
  const forcible = /Land with force/.test(result.message || "");
  return h("div", { class: "notice error", role: "alert" }, icon("alert"),
    h("div", { class: "notice-body" }, h("strong", null, "Not landed"),
      (result.message || "").replace(/ Land with force to land it anyway\.$/, ""),
      forcible ? h("div", { class: "notice-actions" },
        h("button", { class: "btn danger", type: "button", "data-action": "land-force", onclick: onForce },
          icon("land"), "Land anyway")) : null));
}

/** The combined diff of the whole plan, fetched when opened and again when the plan moves. */
export class PlanDiff {
  constructor(planId) {
    this.planId = planId;
    this.key = null;
    this.body = h("div", { class: "plan-diff-body" });
    this.aside = h("span", { class: "aside" });
    this.el = h("details", { class: "section plan-diff", "aria-label": "Combined diff", hidden: true },
      h("summary", { class: "section-head" }, "Combined diff", this.aside), this.body);
    this.el.addEventListener("toggle", () => { if (this.el.open) this.load(true); });
  }
  /** Show it once the plan has integrated work; reload an open one when the tip may have moved. */
  update(p, lc) {
    const shown = p.status === "done" && lc.total > 0;
    this.el.hidden = !shown;
    const key = JSON.stringify([lc.completed, p.verification && p.verification.commit, p.landed && p.landed.commit]);
    if (key !== this.key) {
      this.key = key;
      if (this.el.open) this.load(false);
    }
  }
  async load(showLoading) {
    if (showLoading && !this.body.firstChild) patch(this.body, "loading", () => h("div", { class: "empty-hint" }, "Loading…"));
    try {
      const d = await api("GET", `/agent/plans/${enc(this.planId)}/diff`);
      this.aside.textContent = d.files.length ? `${d.files.length} file(s), ${d.commits} commit(s) since ${shortSha(d.base)}` : "";
      patch(this.body, JSON.stringify([d.base, d.tip, d.diff.length]), () => d.diff.trim()
        ? renderDiff({ diff: d.diff, files: d.files }, "completed")
        : h("div", { class: "empty-hint" }, d.error || "Nothing integrated yet."));
    } catch (err) {
      patch(this.body, `error:${err.message}`, () => h("div", { class: "empty-hint" }, err.message));
    }
  }
}
